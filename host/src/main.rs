use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = kroxide::cli::Cli::parse();
    match kroxide::cli::run(cli) {
        Ok((stdout, stderr)) => {
            print!("{stdout}");
            eprint!("{stderr}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
