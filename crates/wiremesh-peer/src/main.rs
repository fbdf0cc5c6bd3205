fn main() -> std::process::ExitCode {
    eprintln!("wiremesh-peer: not built yet");
    std::process::ExitCode::FAILURE
}
