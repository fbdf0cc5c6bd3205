use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> ExitCode {
    eprintln!("wiremesh: 'plan' is not built yet");
    ExitCode::FAILURE
}
