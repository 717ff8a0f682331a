//! `owlet-docgen OUT_DIR`: writes the man pages and the bash, zsh and fish
//! completions of `owlet` and `owlet-soc`, generated from the same clap
//! definitions the binaries parse with (`owlet_agent::cli::Cli`,
//! `owlet_soc::cli::Cli`), so `--help`, the man page and the completions can
//! never disagree.
//!
//! Layout written (the package manifests in agent/Cargo.toml and
//! soc/Cargo.toml pick files from it; `packaging/build.sh` runs this tool
//! before cargo-deb / cargo-generate-rpm):
//!
//! ```text
//! OUT_DIR/BIN/man/BIN.1, BIN-SUBCOMMAND.1, ...
//! OUT_DIR/BIN/completions/bash/BIN
//! OUT_DIR/BIN/completions/zsh/_BIN
//! OUT_DIR/BIN/completions/fish/BIN.fish
//! ```
//!
//! This is a build tool, never shipped: it lives in its own crate so the
//! sensor binary carries neither clap_mangen nor clap_complete nor a hidden
//! subcommand. It only writes below OUT_DIR, and it writes every file whole
//! (a failed run leaves an error, not a half page the package would ship).
#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::CommandFactory;
use clap_complete::Shell;

/// What each page says under FILES: the paths the packages install and the
/// service uses.
const AGENT_FILES: &str = r#".TP
\fI/etc/owlet/owlet.toml\fR
The configuration (a conffile: upgrades never overwrite it). Check it with \fBowlet check-config\fR.
.TP
\fI/etc/owlet/ca.pem\fR, \fI/etc/owlet/agent.pem\fR, \fI/etc/owlet/agent.key\fR
The SOC's CA and this agent's certificate (0640 root:owlet) and key (0600 owlet:owlet: owlet refuses a key others can read). The service does not start until agent.pem and agent.key exist.
.TP
\fI/var/lib/owlet/\fR
State: the spool of events not yet acknowledged by the SOC, and the baselines. Kept on upgrade and removal, deleted on purge.
.TP
\fI/usr/share/owlet/hw-profiles/\fR
Hardware profiles (small, medium, large).
.TP
\fI/run/owlet/owlet.sock\fR
Control socket for \fBowlet health\fR and \fBowlet reload\fR.
"#;

const SOC_FILES: &str = r#".TP
\fI/etc/owlet-soc/soc.toml\fR
The configuration (a conffile: upgrades never overwrite it).
.TP
\fI/etc/owlet-soc/soc.pem\fR, \fI/etc/owlet-soc/soc.key\fR, \fI/etc/owlet-soc/ca.pem\fR
The SOC's server certificate (0640 root:owlet-soc) and key (0600 owlet-soc:owlet-soc), and the CA of the agents' certificates.
.TP
\fI/var/lib/owlet-soc/\fR
The event database. Kept on upgrade and removal, deleted on purge.
"#;

fn main() {
    if let Err(e) = run() {
        eprintln!("owlet-docgen: {e:#}");
        std::process::exit(2);
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        bail!("usage: owlet-docgen OUT_DIR (writes OUT_DIR/owlet/... and OUT_DIR/owlet-soc/...)");
    };
    let out = PathBuf::from(out);
    write_all(owlet_agent::cli::Cli::command(), AGENT_FILES, &out)?;
    write_all(owlet_soc::cli::Cli::command(), SOC_FILES, &out)?;
    Ok(())
}

/// Man pages for the command and each subcommand, and its completions.
fn write_all(mut cmd: clap::Command, files: &str, out: &Path) -> anyhow::Result<()> {
    let bin = cmd.get_name().to_string();
    // The pages describe `help` in each page's OPTIONS; no page of its own.
    let mut man_cmd = cmd.clone().disable_help_subcommand(true);
    man_cmd.build();
    let man_dir = out.join(&bin).join("man");
    create_dir(&man_dir)?;
    write_pages(&man_cmd, Some(files), &man_dir)?;

    for (shell, sub, name) in [
        (Shell::Bash, "bash", bin.clone()),
        (Shell::Zsh, "zsh", format!("_{bin}")),
        (Shell::Fish, "fish", format!("{bin}.fish")),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd, &bin, &mut script);
        let dir = out.join(&bin).join("completions").join(sub);
        create_dir(&dir)?;
        write_file(&dir.join(name), &script)?;
    }
    Ok(())
}

/// `owlet.1` for the built `cmd`, then one page per visible subcommand,
/// named by clap's display name (`owlet-check-config.1`).
fn write_pages(cmd: &clap::Command, files: Option<&str>, dir: &Path) -> anyhow::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut page)?;
    }
    if let Some(files) = files {
        page.extend_from_slice(b".SH FILES\n");
        page.extend_from_slice(files.as_bytes());
    }
    if cmd.get_version().is_some() {
        man.render_version_section(&mut page)?;
    }
    write_file(&dir.join(man.get_filename()), &page)?;
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() {
            continue;
        }
        write_pages(sub, None, dir)?;
    }
    Ok(())
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Writes through a temporary file and a rename: never a half-written page.
fn write_file(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp-docgen");
    fs::write(&tmp, data).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot rename into {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_completions_follow_the_cli() {
        let out = tempfile::tempdir().unwrap();
        write_all(owlet_agent::cli::Cli::command(), AGENT_FILES, out.path()).unwrap();
        let man = out.path().join("owlet/man");
        let main_page = fs::read_to_string(man.join("owlet.1")).unwrap();
        assert!(main_page.contains(".SH FILES"), "{main_page}");
        assert!(main_page.contains("check\\-config"), "{main_page}");
        // One page per subcommand, nested ones too; none for `help`.
        assert!(man.join("owlet-check-config.1").is_file());
        assert!(man.join("owlet-probe-icmp.1").is_file());
        assert!(!man.join("owlet-help.1").exists());
        let page = fs::read_to_string(man.join("owlet-check-config.1")).unwrap();
        assert!(!page.contains(".SH FILES"), "FILES only on the main page");
        let bash = fs::read_to_string(out.path().join("owlet/completions/bash/owlet")).unwrap();
        assert!(bash.contains("check-config"));
        assert!(out.path().join("owlet/completions/zsh/_owlet").is_file());
        assert!(
            out.path()
                .join("owlet/completions/fish/owlet.fish")
                .is_file()
        );
    }
}
