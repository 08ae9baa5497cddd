use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = kroxide::cli::Cli::parse();
    match kroxide::cli::run(cli) {
        Ok(outcome) => {
            print!("{}", outcome.stdout);
            eprint!("{}", outcome.stderr);
            std::process::ExitCode::from(outcome.code)
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
