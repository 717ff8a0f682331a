//! Stand-alone `owlet probe` for development: `cargo run -p owlet-probe --example probe -- tcp 127.0.0.1:22`.
use clap::Parser;

#[derive(Parser)]
#[command(name = "owlet-probe")]
struct Cli {
    #[command(flatten)]
    args: owlet_probe::cli::ProbeArgs,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    std::process::exit(owlet_probe::cli::run(cli.args).await);
}
