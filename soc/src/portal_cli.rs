//! `owlet-soc user ...`: the portal's users from the command line (the
//! first mssp-admin has to come from somewhere). Opens the portal's
//! database (`portal.db`), creating it: beside `[sink] path` of a soc.toml,
//! or in `[paths] state_dir` of the scaled-out SOC's portal.toml.

use std::path::Path;

use owlet_soc_portal::i18n::Lang;
use owlet_soc_portal::users::{self, Credentials, NewUser};
use owlet_soc_portal::{Db, Role};

use crate::cli::UserCommand;
use crate::config::SocConfig;

fn open(path: &Path, load: &impl Fn(&Path) -> anyhow::Result<SocConfig>) -> anyhow::Result<Db> {
    let (settings, _) = crate::portal_config::settings(path, load)?;
    std::fs::create_dir_all(&settings.root)?;
    Ok(Db::open(&settings.portal_db())?)
}

fn print_credentials(c: &Credentials) {
    println!("User:                {}", c.name);
    println!("One-time password:   {}", c.password);
    println!("TOTP (authenticator): {}", c.otpauth_uri);
    println!(
        "TOTP is {} for this user. The password must be changed at the first login; \
         hand both over by separate, safe channels. They are not shown again.",
        if c.totp_required {
            "required"
        } else {
            "optional (not required)"
        }
    );
}

/// Runs one `user` command.
pub fn user(
    command: UserCommand,
    load: impl Fn(&Path) -> anyhow::Result<SocConfig>,
) -> anyhow::Result<i32> {
    match command {
        UserCommand::Add {
            config,
            name,
            role,
            tenants,
            lang,
            time_zone,
            totp,
        } => {
            let db = open(&config, &load)?;
            let role = Role::parse(&role).map_err(|e| anyhow::anyhow!("--role: {e}"))?;
            if !matches!(lang.as_str(), "en" | "ja") {
                anyhow::bail!("--lang: \"{lang}\"; choose en or ja");
            }
            let credentials = users::add(
                &db.lock(),
                &NewUser {
                    name,
                    role,
                    tenants,
                    lang: Lang::parse(&lang),
                    time_zone,
                    totp,
                },
            )?;
            print_credentials(&credentials);
            Ok(0)
        }
        UserCommand::List { config } => {
            let db = open(&config, &load)?;
            let list = users::list(&db.lock())?;
            if list.is_empty() {
                println!("No portal users yet: owlet-soc user add --name N --role mssp-admin");
            }
            for u in list {
                println!(
                    "{:<24} {:<16} {:<24} {} {}{}",
                    u.name,
                    u.role,
                    if u.role == Role::MsspAdmin {
                        "(all tenants)".to_string()
                    } else {
                        u.tenants.join(",")
                    },
                    u.lang.code(),
                    u.time_zone,
                    if u.disabled { "  DISABLED" } else { "" }
                );
            }
            Ok(0)
        }
        UserCommand::Passwd { config, name } => {
            let db = open(&config, &load)?;
            print_credentials(&users::reset_password(&db.lock(), &name)?);
            Ok(0)
        }
        UserCommand::Disable {
            config,
            name,
            enable,
        } => {
            let db = open(&config, &load)?;
            users::set_disabled(&db.lock(), &name, !enable)?;
            println!(
                "{name} {}.",
                if enable {
                    "enabled"
                } else {
                    "disabled; its sessions ended"
                }
            );
            Ok(0)
        }
    }
}
