//! The `owlet` binary: see `owlet --help` and the README.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = owlet_agent::cli::Cli::parse();
    std::process::exit(owlet_agent::cli::main(cli));
}
