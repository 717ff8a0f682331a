//! A tenant's notification contacts (`/t/T/contacts`, permission
//! `TenantContacts`: mssp-admin for any tenant, that tenant's
//! customer-admin for its own): list, add, edit (name, address, minimum
//! severity), enable / disable, delete.
//!
//! The list itself is `owlet_soc_notify::contacts`' file for the tenant,
//! which the notifier in `owlet-soc serve` re-reads when it changes: see
//! that module for why the hand-over is a file and what it guarantees.
//! This page never holds a copy, so what it shows is what mail goes to.
//!
//! Guarantees: the tenant is the path's, which the guard checked against
//! the user's scope, so a change reaches only that tenant's list (another
//! tenant's contact id is simply not in it: 404); every address is checked
//! with the notifier's own parser and a bad one is shown on the page with
//! the reason (400), nothing saved; every change is audited under the
//! tenant (`contact.add / edit / enable / disable / delete`, with the
//! address); every POST is CSRF-checked by the guard.

use std::collections::HashMap;

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use owlet_soc_notify::config::Severity;
use owlet_soc_notify::contacts::{self, Contact, ContactsError};
use serde::Deserialize;

use crate::web::{AppState, Ctx, Frame, Inner, PageError, render};

#[derive(Template)]
#[template(path = "contacts.html")]
struct ContactsPage {
    f: Frame,
    contacts: Vec<Contact>,
    severities: Vec<&'static str>,
    base: String,
    /// Why the last change was refused (shown above the forms).
    error: String,
    /// The list could not be read (the reason is in the SOC's log).
    unreadable: bool,
    /// What the add form showed when it was refused.
    typed: ContactForm,
}

/// The add and edit forms.
#[derive(Deserialize, Default, Clone)]
pub struct ContactForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
    /// `info`, `warning`, `critical`, or empty: every notification.
    #[serde(default)]
    pub min_severity: String,
}

impl ContactForm {
    /// The form's values checked: (name, address, minimum severity).
    fn check(&self) -> Result<(String, String, Option<Severity>), String> {
        let email = contacts::parse_address(&self.email)?;
        let min = match self.min_severity.trim() {
            "" => None,
            s => Some(Severity::parse(s).ok_or_else(|| {
                format!("\"{s}\" is not a severity; choose info, warning or critical")
            })?),
        };
        let name = self.name.trim();
        let name = if name.is_empty() { &email } else { name };
        Ok((name.chars().take(200).collect(), email, min))
    }
}

fn base(tenant: &str) -> String {
    format!("/t/{tenant}/contacts")
}

impl From<ContactsError> for PageError {
    fn from(e: ContactsError) -> Self {
        match e {
            ContactsError::Tenant { .. } => PageError::NotFound,
            other => PageError::Internal(other.to_string()),
        }
    }
}

/// Why a change did not happen: shown on the page, or a page error.
enum Refused {
    Form(String),
    Page(PageError),
}

impl From<ContactsError> for Refused {
    fn from(e: ContactsError) -> Self {
        match e {
            ContactsError::Full => Refused::Form(e.to_string()),
            other => Refused::Page(other.into()),
        }
    }
}

fn page(s: &Inner, ctx: &Ctx, error: String, typed: ContactForm) -> Result<Response, PageError> {
    let tenant = ctx.tenant()?;
    let (list, unreadable) = match contacts::load(&s.settings.contacts_root, tenant) {
        Ok(list) => (list, false),
        Err(ContactsError::Tenant { .. }) => return Err(PageError::NotFound),
        Err(e) => {
            tracing::error!(tenant, error = %e, "portal: contacts");
            (Vec::new(), true)
        }
    };
    let status = if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let html = render(&ContactsPage {
        f: Frame::new(ctx, "contacts.title"),
        contacts: list,
        severities: Severity::ALL.iter().map(|s| s.name()).collect(),
        base: base(tenant),
        error,
        unreadable,
        typed,
    })?;
    Ok((status, html).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, PageError> {
    state
        .blocking(move |s| page(s, &ctx, String::new(), ContactForm::default()))
        .await
}

/// Applies `change` to the tenant's list, audits `action` with what
/// `change` returned, and answers with the list (or the refusal on it).
async fn apply(
    state: AppState,
    ctx: Ctx,
    action: &'static str,
    typed: ContactForm,
    change: impl FnOnce(&mut Vec<Contact>) -> Result<String, Refused> + Send + 'static,
) -> Result<Response, PageError> {
    state
        .blocking(move |s| {
            let tenant = ctx.tenant()?.to_string();
            match contacts::update(&s.settings.contacts_root, &tenant, change) {
                Ok(detail) => {
                    s.audit(&ctx, action, &detail);
                    Ok(Redirect::to(&base(&tenant)).into_response())
                }
                Err(Refused::Form(message)) => page(s, &ctx, message, typed),
                Err(Refused::Page(e)) => Err(e),
            }
        })
        .await
}

pub async fn add(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<ContactForm>,
) -> Result<Response, PageError> {
    let typed = form.clone();
    apply(state, ctx, "contact.add", typed, move |list| {
        let (name, email, min_severity) = form.check().map_err(Refused::Form)?;
        let id = contacts::next_id(list);
        list.push(Contact {
            id,
            name,
            email,
            min_severity,
            enabled: true,
        });
        Ok(describe(&list[list.len() - 1]))
    })
    .await
}

/// "#3 Ken <ken@acme.example> from warning, enabled".
fn describe(c: &Contact) -> String {
    format!(
        "#{} {} <{}> from {}, {}",
        c.id,
        c.name,
        c.email,
        c.min_severity.map_or("any", Severity::name),
        if c.enabled { "enabled" } else { "disabled" }
    )
}

/// `{contact}` of the path; anything but a number is not found.
fn contact_id(params: &HashMap<String, String>) -> Result<u64, PageError> {
    const CONTACT: &str = "contact";
    params
        .get(CONTACT)
        .and_then(|v| v.parse().ok())
        .ok_or(PageError::NotFound)
}

/// The position of contact `id` in the tenant's list, else not found.
fn position(list: &[Contact], id: u64) -> Result<usize, Refused> {
    list.iter()
        .position(|c| c.id == id)
        .ok_or(Refused::Page(PageError::NotFound))
}

pub async fn edit(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(params): Path<HashMap<String, String>>,
    Form(form): Form<ContactForm>,
) -> Result<Response, PageError> {
    let id = contact_id(&params)?;
    apply(
        state,
        ctx,
        "contact.edit",
        ContactForm::default(),
        move |list| {
            let at = position(list, id)?;
            let (name, email, min_severity) = form.check().map_err(Refused::Form)?;
            let c = &mut list[at];
            let before = describe(c);
            (c.name, c.email, c.min_severity) = (name, email, min_severity);
            Ok(format!("{before} -> {}", describe(c)))
        },
    )
    .await
}

async fn switch(
    state: AppState,
    ctx: Ctx,
    params: HashMap<String, String>,
    enabled: bool,
) -> Result<Response, PageError> {
    let id = contact_id(&params)?;
    let action = if enabled {
        "contact.enable"
    } else {
        "contact.disable"
    };
    apply(state, ctx, action, ContactForm::default(), move |list| {
        let at = position(list, id)?;
        list[at].enabled = enabled;
        Ok(describe(&list[at]))
    })
    .await
}

pub async fn enable(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, PageError> {
    switch(state, ctx, params, true).await
}

pub async fn disable(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, PageError> {
    switch(state, ctx, params, false).await
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let id = contact_id(&params)?;
    apply(
        state,
        ctx,
        "contact.delete",
        ContactForm::default(),
        move |list| {
            let at = position(list, id)?;
            Ok(describe(&list.remove(at)))
        },
    )
    .await
}
