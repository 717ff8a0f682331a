//! Bench-only stand-in for `owlet capture` (the agent mounts the same
//! [`owlet_capture::cli::CaptureArgs`]): `replay --pcap FILE [--json] ...`.

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    capture: owlet_capture::cli::CaptureArgs,
}

fn main() {
    std::process::exit(owlet_capture::cli::run(Args::parse().capture));
}
