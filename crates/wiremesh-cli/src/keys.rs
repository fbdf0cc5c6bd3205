use std::process::ExitCode;

#[derive(clap::Args)]
pub struct KeygenArgs {}

#[derive(clap::Args)]
pub struct PubkeyArgs {}

pub fn keygen(_args: KeygenArgs) -> ExitCode {
    eprintln!("wiremesh: 'keygen' is not built yet");
    ExitCode::FAILURE
}

pub fn pubkey(_args: PubkeyArgs) -> ExitCode {
    eprintln!("wiremesh: 'pubkey' is not built yet");
    ExitCode::FAILURE
}
