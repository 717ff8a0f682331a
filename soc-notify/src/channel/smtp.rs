//! Mail over SMTP with STARTTLS always required (lettre, rustls with ring).
//!
//! A server that does not offer STARTTLS, or whose certificate does not
//! verify against the system's roots (or `ca_file`), gets nothing: the
//! password and the customer's incident never cross the network in clear.
//! A notification goes to the channel's `to` and the tenant's contacts
//! that want it ([`crate::contacts`]), each address once: the list
//! [`SmtpChannel::recipients`] makes when the notification is composed is
//! recorded with the delivery, and every attempt sends to exactly that list.
//! The message id is stable per notification (`<owlet.TENANT.ID@owlet-soc>`)
//! so a resend after a crash can be recognised by the customer's mail
//! system; `X-Owlet-Notification` carries `TENANT/ID` for their filters.

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Mailboxes};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{SendError, Sent};
use crate::config::ChannelConfig;
use crate::error::{NotifyError, Result, read_secret};
use crate::record::Outgoing;

pub struct SmtpChannel {
    name: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Mailboxes,
}

#[derive(Debug, Clone)]
struct NotificationHeader(String);

impl Header for NotificationHeader {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Owlet-Notification")
    }
    fn parse(s: &str) -> std::result::Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(NotificationHeader(s.to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

impl SmtpChannel {
    pub fn new(config: &ChannelConfig) -> Result<Self> {
        let ChannelConfig::Smtp {
            name,
            server,
            port,
            user,
            password_file,
            from,
            to,
            ca_file,
            timeout,
            ..
        } = config
        else {
            unreachable!("SmtpChannel::new is only called with an smtp channel")
        };
        let bad = |m: String| NotifyError::Channel {
            channel: name.clone(),
            message: m,
        };
        let mut tls = TlsParameters::builder(server.clone());
        if let Some(path) = ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| bad(format!("cannot read ca_file {}: {e}", path.display())))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| bad(format!("ca_file {}: {e}", path.display())))?;
            tls = tls
                .certificate_store(CertificateStore::None)
                .add_root_certificate(cert);
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| bad(format!("TLS setup: {e}")))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server.as_str())
            .port(*port)
            .tls(Tls::Required(tls))
            .timeout(Some(*timeout));
        if let (Some(user), Some(file)) = (user, password_file) {
            let password = read_secret("SMTP password_file", file)?;
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        let from: Mailbox = from
            .parse()
            .map_err(|e| bad(format!("from \"{from}\" is not a mail address: {e}")))?;
        let mut mailboxes = Mailboxes::new();
        for t in to {
            let mb: Mailbox = t
                .parse()
                .map_err(|e| bad(format!("to \"{t}\" is not a mail address: {e}")))?;
            mailboxes.push(mb);
        }
        Ok(SmtpChannel {
            name: name.clone(),
            transport: builder.build(),
            from,
            to: mailboxes,
        })
    }

    /// The channel's `to`, then each of `contacts` not already among them
    /// (addresses compared without case), as one list.
    pub fn recipients(&self, contacts: &[lettre::Address]) -> String {
        let mut all = self.to.clone();
        for address in contacts {
            let known = all
                .iter()
                .any(|m| m.email.to_string().eq_ignore_ascii_case(address.as_ref()));
            if !known {
                all.push(Mailbox::new(None, address.clone()));
            }
        }
        all.to_string()
    }

    /// Mails a periodic report (owlet-soc-report's schedule) to `to`, not
    /// to the channel's incident recipients: a text part and an HTML part
    /// (`multipart/alternative`), and `attachments` as
    /// `(file name, content type, bytes)`. Same transport, TLS and
    /// credentials as incidents.
    pub async fn send_report(
        &self,
        to: &[String],
        subject: &str,
        text: String,
        html: String,
        attachments: Vec<(String, String, Vec<u8>)>,
    ) -> std::result::Result<(), SendError> {
        use lettre::message::{Attachment, MultiPart};
        let mut b = Message::builder().from(self.from.clone()).subject(subject);
        for t in to {
            let mb: Mailbox = t.parse().map_err(|e| {
                SendError::permanent(format!("{}: \"{t}\" is not a mail address: {e}", self.name))
            })?;
            b = b.to(mb);
        }
        let mut mixed = MultiPart::mixed().multipart(MultiPart::alternative_plain_html(text, html));
        for (name, kind, bytes) in attachments {
            let kind = ContentType::parse(&kind)
                .map_err(|e| SendError::permanent(format!("{}: {kind}: {e}", self.name)))?;
            mixed = mixed.singlepart(Attachment::new(name).body(bytes, kind));
        }
        let email = b
            .multipart(mixed)
            .map_err(|e| SendError::permanent(format!("{}: building the mail: {e}", self.name)))?;
        self.transport
            .send(email)
            .await
            .map(|_| ())
            .map_err(|e| SendError::retry(e.to_string()))
    }

    /// Sends `msg` to `recipients`, a list [`SmtpChannel::recipients`] made.
    pub async fn send(
        &self,
        msg: &Outgoing,
        recipients: &str,
    ) -> std::result::Result<Sent, SendError> {
        let to: Mailboxes = recipients.parse().map_err(|e| {
            SendError::permanent(format!(
                "{}: the recorded recipients \"{recipients}\" are not a mail address list: {e}",
                self.name
            ))
        })?;
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(msg.subject.clone())
            .message_id(Some(format!(
                "<owlet.{}.{}@owlet-soc>",
                msg.tenant, msg.notification_id
            )))
            .header(ContentType::TEXT_PLAIN)
            .header(NotificationHeader(format!(
                "{}/{}",
                msg.tenant, msg.notification_id
            )));
        for to in to {
            b = b.to(to);
        }
        let email = b
            .body(msg.body.clone())
            .map_err(|e| SendError::permanent(format!("{}: building the mail: {e}", self.name)))?;
        match self.transport.send(email).await {
            Ok(_) => Ok(Sent::Delivered),
            // A permanent SMTP reply (5xx: unknown recipient, refused auth)
            // is still retried: an operator may fix the server side, and the
            // give-up time bounds it.
            Err(e) => Err(SendError::retry(e.to_string())),
        }
    }
}
