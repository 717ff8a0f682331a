//! The `owlet` binary: see `owlet --help` and the README.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = match owlet_agent::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help / --version are not errors; a usage error is UNKNOWN (3)
            // in Nagios terms, never CRITICAL.
            std::process::exit(if e.use_stderr() { 3 } else { 0 });
        }
    };
    std::process::exit(owlet_agent::cli::main(cli));
}
