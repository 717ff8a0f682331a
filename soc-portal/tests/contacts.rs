//! A tenant's notification contacts (`/t/T/contacts`) through the portal's
//! HTTP handlers: a customer-admin adds, edits, disables, enables and
//! deletes its tenant's contacts; what the page saves is what the notifier
//! reads (`owlet_soc_notify::contacts::load`); a bad address is refused on
//! the page with its reason and nothing saved; every change is audited
//! under the tenant; another tenant's contact cannot be reached; a viewer
//! and a request without the CSRF token are refused; markup in a name is
//! text; a full list refuses one more contact on the page.
//!
//! (Mail to contacts against a real SMTP server: soc-notify's
//! `tests/contacts.rs`.)

mod common;

use common::*;
use owlet_soc_notify::config::Severity;
use owlet_soc_notify::contacts::{self, Contact};

fn saved(fx: &Fixture, tenant: &str) -> Vec<Contact> {
    contacts::load(&fx.state.0.settings.root, tenant).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_admin_manages_its_tenants_contacts() {
    let fx = Fixture::new();
    let (cookie, csrf) = fx.login("customer-admin");
    let (s, body, _) = fx.get("/t/acme/contacts", Some(&cookie)).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("No contacts yet."), "{body}");
    assert!(!body.contains(BETA_MARK), "beta's contact shown to acme");
    assert!(
        body.contains("href=\"/t/acme/contacts\""),
        "the tenant menu links it"
    );

    let (s, _, r) = fx
        .post(
            "/t/acme/contacts",
            Some(&cookie),
            &format!(
                "csrf={csrf}&name={}&email=ken%40acme.example&min_severity=warning",
                urlencode("Ken <b>K</b>")
            ),
        )
        .await;
    assert_eq!(s, 303);
    assert_eq!(r.headers()["location"], "/t/acme/contacts");
    let list = saved(&fx, "acme");
    assert_eq!(list.len(), 1);
    let ken = &list[0];
    assert_eq!(
        (ken.email.as_str(), ken.min_severity, ken.enabled),
        ("ken@acme.example", Some(Severity::Warning), true)
    );
    let (_, body, _) = fx.get("/t/acme/contacts", Some(&cookie)).await;
    assert!(body.contains("ken@acme.example"), "{body}");
    assert!(
        body.contains("Ken &lt;b&gt;K&lt;/b&gt;") || body.contains("Ken &#60;b&#62;K&#60;/b&#62;"),
        "a name is text: {body}"
    );
    assert!(!body.contains("<b>K</b>"));

    // A bad address: the page says why, with what was typed, and nothing is saved.
    let (s, body, _) = fx
        .post(
            "/t/acme/contacts",
            Some(&cookie),
            &format!("csrf={csrf}&name=typo&email=ken.acme.example&min_severity="),
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        body.contains("class=\"error\"")
            && body.contains("&#34;ken.acme.example&#34; is not a mail address")
            && body.contains("name@example.com"),
        "{body}"
    );
    assert!(
        body.contains("value=\"ken.acme.example\""),
        "what was typed is kept"
    );
    assert_eq!(saved(&fx, "acme").len(), 1);

    let base = format!("/t/acme/contacts/{}", ken.id);
    let (s, _, _) = fx
        .post(
            &base,
            Some(&cookie),
            &format!("csrf={csrf}&name=Ken&email=ken%40acme.example&min_severity=critical"),
        )
        .await;
    assert_eq!(s, 303);
    assert_eq!(saved(&fx, "acme")[0].min_severity, Some(Severity::Critical));
    let (s, _, _) = fx
        .post(
            &format!("{base}/disable"),
            Some(&cookie),
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(s, 303);
    assert!(!saved(&fx, "acme")[0].enabled);
    let (s, _, _) = fx
        .post(
            &format!("{base}/enable"),
            Some(&cookie),
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(s, 303);
    assert!(saved(&fx, "acme")[0].enabled);
    let (s, _, _) = fx
        .post(
            &format!("{base}/delete"),
            Some(&cookie),
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(s, 303);
    assert!(saved(&fx, "acme").is_empty());

    let actions: Vec<String> = audit_of(&fx, "acme").into_iter().map(|(a, _)| a).collect();
    for a in [
        "contact.add",
        "contact.edit",
        "contact.disable",
        "contact.enable",
        "contact.delete",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} not audited: {actions:?}"
        );
    }
    let (_, detail) = audit_of(&fx, "acme")
        .into_iter()
        .find(|(a, _)| a == "contact.add")
        .unwrap();
    assert!(detail.contains("ken@acme.example"), "{detail}");
    assert!(
        !audit_of(&fx, "beta")
            .iter()
            .any(|(a, _)| a.starts_with("contact.")),
        "acme's changes audited under beta"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_contacts_a_viewer_and_a_missing_token_are_refused() {
    let fx = Fixture::new();
    let beta_id = saved(&fx, "beta")[0].id;
    let (cookie, csrf) = fx.login("customer-admin");
    // Beta's contact id under beta: the guard's 404; under acme: not in acme's list.
    for path in [
        format!("/t/beta/contacts/{beta_id}/delete"),
        format!("/t/acme/contacts/{beta_id}/delete"),
        "/t/acme/contacts/x/delete".to_string(),
    ] {
        let (s, body, _) = fx.post(&path, Some(&cookie), &format!("csrf={csrf}")).await;
        assert_eq!(s, 404, "{path}");
        assert!(!body.contains(BETA_MARK));
    }
    assert_eq!(saved(&fx, "beta").len(), 1, "beta's contact untouched");

    let s = fx
        .post(
            "/t/acme/contacts",
            Some(&cookie),
            "csrf=0000&name=x&email=x%40acme.example",
        )
        .await
        .0;
    assert_eq!(s, 403, "without the CSRF token");
    let (viewer, vcsrf) = fx.login("customer-viewer");
    assert_eq!(fx.get("/t/acme/contacts", Some(&viewer)).await.0, 403);
    let s = fx
        .post(
            "/t/acme/contacts",
            Some(&viewer),
            &format!("csrf={vcsrf}&name=x&email=x%40acme.example"),
        )
        .await
        .0;
    assert_eq!(s, 403);
    assert!(saved(&fx, "acme").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_list_refuses_one_more_on_the_page() {
    let fx = Fixture::new();
    let root = fx.state.0.settings.root.clone();
    contacts::update(&root, "acme", |l| {
        while l.len() < contacts::MAX_CONTACTS {
            let id = contacts::next_id(l);
            l.push(Contact {
                id,
                name: format!("c{id}"),
                email: format!("c{id}@acme.example"),
                min_severity: None,
                enabled: true,
            });
        }
        Ok::<_, contacts::ContactsError>(())
    })
    .unwrap();
    let (cookie, csrf) = fx.login("customer-admin");
    let (s, body, _) = fx
        .post(
            "/t/acme/contacts",
            Some(&cookie),
            &format!("csrf={csrf}&name=late&email=late%40acme.example&min_severity="),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body.contains("class=\"error\"") && body.contains("at most 200 contacts"),
        "{body}"
    );
    assert_eq!(
        saved(&fx, "acme").len(),
        contacts::MAX_CONTACTS,
        "nothing saved"
    );
}
