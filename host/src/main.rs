use clap::Parser;

#[cfg(feature = "count-allocations")]
#[global_allocator]
static ALLOCATOR: kroxide::allocations::Counting = kroxide::allocations::Counting;

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
