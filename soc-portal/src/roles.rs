//! Roles and what each may do.
//!
//! Guarantees: [`Role::may`] is the only table of permissions, and a
//! tenant scope is computed in [`Scope`] alone; `mssp-admin` is the only
//! role that reaches every tenant, customer roles hold exactly one.

use std::fmt;

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    MsspAdmin,
    MsspAnalyst,
    CustomerAdmin,
    CustomerViewer,
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    /// Anyone, logged in or not (login page, static assets).
    Public,
    /// Any logged-in user (tenant list, own preferences, logout).
    Session,
    /// Read a tenant's pages and download its logs.
    View,
    /// Change an alert's workflow state and comment on it.
    Triage,
    /// Read a tenant's audit log.
    TenantAudit,
    /// Manage a tenant's own customer users (`/t/T/users`): add a
    /// customer-viewer or customer-admin of that tenant, disable, enable,
    /// reset a password. The tenant comes from the path, checked against
    /// the scope like every tenant route.
    TenantUsers,
    /// Manage a tenant's notification contacts (`/t/T/contacts`): who
    /// gets its mail notifications besides the SOC's configured
    /// recipients. The tenant comes from the path, like every tenant route.
    TenantContacts,
    /// Tenants, users, sensors, the whole audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::MsspAdmin,
        Role::MsspAnalyst,
        Role::CustomerAdmin,
        Role::CustomerViewer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::MsspAdmin => "mssp-admin",
            Role::MsspAnalyst => "mssp-analyst",
            Role::CustomerAdmin => "customer-admin",
            Role::CustomerViewer => "customer-viewer",
        }
    }

    pub fn parse(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown role \"{s}\"; roles: {}",
                    Role::ALL.map(Role::name).join(", ")
                )
            })
    }

    /// MSSP roles must use TOTP.
    pub fn is_mssp(self) -> bool {
        matches!(self, Role::MsspAdmin | Role::MsspAnalyst)
    }

    /// Whether the role may do what `perm` guards (tenant scope aside).
    pub fn may(self, perm: Perm) -> bool {
        match perm {
            Perm::Public | Perm::Session | Perm::View => true,
            Perm::Triage => self.is_mssp(),
            Perm::TenantAudit | Perm::TenantUsers | Perm::TenantContacts => {
                matches!(self, Role::MsspAdmin | Role::CustomerAdmin)
            }
            Perm::Admin => self == Role::MsspAdmin,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The tenants a user reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `mssp-admin`: every tenant the SOC has.
    All,
    /// Exactly these (assigned).
    Only(Vec<String>),
}

impl Scope {
    pub fn of(role: Role, assigned: Vec<String>) -> Scope {
        if role == Role::MsspAdmin {
            Scope::All
        } else {
            Scope::Only(assigned)
        }
    }

    /// Whether `tenant` is in scope (existence is checked separately).
    pub fn contains(&self, tenant: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(list) => list.iter().any(|t| t == tenant),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_unknown_names_list_the_known() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.name()), Ok(r));
        }
        let e = Role::parse("root").unwrap_err();
        assert!(e.contains("mssp-analyst"), "{e}");
    }

    #[test]
    fn only_mssp_triage_and_only_admin_administers() {
        assert!(Role::MsspAnalyst.may(Perm::Triage));
        assert!(!Role::CustomerAdmin.may(Perm::Triage));
        assert!(Role::CustomerAdmin.may(Perm::TenantAudit));
        assert!(!Role::MsspAnalyst.may(Perm::Admin));
        assert!(!Role::CustomerViewer.may(Perm::TenantAudit));
        assert!(Role::CustomerAdmin.may(Perm::TenantUsers));
        assert!(!Role::CustomerViewer.may(Perm::TenantUsers));
        assert!(!Role::MsspAnalyst.may(Perm::TenantUsers));
        assert!(Role::CustomerAdmin.may(Perm::TenantContacts));
        assert!(!Role::CustomerViewer.may(Perm::TenantContacts));
    }
}
