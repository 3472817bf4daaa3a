//! [`SmtpMessenger`]: `notify.email` over SMTP, with lettre's pooled
//! transport.
//!
//! lettre bounds only the TCP connect with its timeout, not the
//! conversation after it, so every send is also bounded as a whole. A send
//! cut off there leaves its connection mid-conversation, and lettre would
//! put that connection back in the pool, where the next message would read
//! the answers meant for this one; so the whole pool is replaced then.
//!
//! lettre's pool spawns tokio tasks when it is built and when it is dropped,
//! and panics outside a runtime. So the pool is built on the first send,
//! and a messenger dropped after its runtime is gone leaks its pool rather
//! than panicking (see [`SmtpMessenger`]'s `Drop`).

use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use lettre::address::AddressError;
use lettre::message::Mailbox;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::response::{Code, Severity};
use lettre::transport::smtp::{self, AsyncSmtpTransportBuilder, PoolConfig};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::handlers::notify::{DeliveryError, Message, Messenger};

/// The header that carries the attempt id as it is, for people and filters;
/// the `Message-ID` carries it too, in the form that header allows.
pub const ATTEMPT_HEADER: &str = "X-Docket-Attempt";

/// How long a pooled connection may stay idle. Mail servers commonly drop
/// idle clients after a few minutes; closing ours first avoids finding out
/// on the next send.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// How the connection to the mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text. Only for a relay on loopback or a trusted network (and
    /// the tests); credentials are refused with it.
    None,
    /// Plain connect, then STARTTLS, which the server must offer: a server
    /// that does not is refused rather than written to in the clear.
    /// Usually port 587.
    StartTls,
    /// TLS from the first byte (SMTPS). Usually port 465.
    Implicit,
}

impl SmtpTls {
    /// The port this mode is usually served on.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
        }
    }
}

impl fmt::Display for SmtpTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmtpTls::None => "none",
            SmtpTls::StartTls => "starttls",
            SmtpTls::Implicit => "tls",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown SMTP TLS mode `{0}`: expected none, starttls or tls")]
pub struct UnknownTlsMode(String);

impl FromStr for SmtpTls {
    type Err = UnknownTlsMode;

    /// `none`, `starttls` or `tls`, as configuration spells them.
    fn from_str(s: &str) -> Result<SmtpTls, UnknownTlsMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(SmtpTls::None),
            "starttls" => Ok(SmtpTls::StartTls),
            "tls" => Ok(SmtpTls::Implicit),
            _ => Err(UnknownTlsMode(s.to_owned())),
        }
    }
}

/// A user name and password for SMTP AUTH.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpCredentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for SmtpCredentials {
    /// Without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpCredentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Where and how to send mail, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    /// The mail server's host name; also the name its TLS certificate must
    /// carry.
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// The sender, e.g. `Docket <noreply@gov.example>`. Its domain is also
    /// the right part of every `Message-ID`.
    pub from: String,
    pub credentials: Option<SmtpCredentials>,
    /// The most one delivery may take, connecting included. Past it the
    /// attempt fails as retryable.
    pub timeout: Duration,
    /// The most connections kept open to the server at once.
    pub pool_size: u32,
}

impl SmtpSettings {
    /// `tls` on its usual port, no credentials, a 10 s timeout and up to 4
    /// pooled connections.
    pub fn new(host: impl Into<String>, tls: SmtpTls, from: impl Into<String>) -> SmtpSettings {
        SmtpSettings {
            host: host.into(),
            port: tls.default_port(),
            tls,
            from: from.into(),
            credentials: None,
            timeout: Duration::from_secs(10),
            pool_size: 4,
        }
    }
}

/// Why an [`SmtpMessenger`] could not be built: configuration mistakes,
/// found when a worker starts, never during an attempt.
#[derive(Debug, thiserror::Error)]
pub enum SmtpConfigError {
    #[error("the mail server host is empty")]
    EmptyHost,
    #[error("the sender address `{address}` is not a valid mailbox")]
    From {
        address: String,
        #[source]
        source: AddressError,
    },
    #[error("the SMTP timeout must be longer than zero")]
    ZeroTimeout,
    #[error("the SMTP pool size must be at least one")]
    ZeroPool,
    #[error(
        "SMTP credentials need TLS (starttls or tls): they would cross the network in clear text"
    )]
    CredentialsWithoutTls,
    #[error("could not set up TLS for the mail server")]
    Tls(#[source] smtp::Error),
}

/// Delivers `email` messages through one mail server.
pub struct SmtpMessenger {
    from: Mailbox,
    timeout: Duration,
    /// Builds the pool on the first send, and a fresh one when one is
    /// abandoned (see the module's doc).
    builder: AsyncSmtpTransportBuilder,
    /// Locked only to clone or swap, never across an await.
    pool: Mutex<Pool>,
    /// For `Debug` only.
    settings: SmtpSettings,
}

/// The pool in use, if built yet, and its generation, so that several
/// sends timing out together replace it once.
#[derive(Default)]
struct Pool {
    generation: u64,
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
}

impl fmt::Debug for SmtpMessenger {
    /// The settings, without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMessenger")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl SmtpMessenger {
    /// Checks `settings`; builds the pool and connects only on the first
    /// send, so this needs no runtime.
    pub fn new(settings: SmtpSettings) -> Result<SmtpMessenger, SmtpConfigError> {
        let host = settings.host.trim();
        if host.is_empty() {
            return Err(SmtpConfigError::EmptyHost);
        }
        if settings.timeout.is_zero() {
            return Err(SmtpConfigError::ZeroTimeout);
        }
        if settings.pool_size == 0 {
            return Err(SmtpConfigError::ZeroPool);
        }
        let from: Mailbox =
            settings
                .from
                .trim()
                .parse()
                .map_err(|source| SmtpConfigError::From {
                    address: settings.from.clone(),
                    source,
                })?;
        let tls = match settings.tls {
            SmtpTls::None if settings.credentials.is_some() => {
                return Err(SmtpConfigError::CredentialsWithoutTls);
            }
            SmtpTls::None => Tls::None,
            SmtpTls::StartTls => {
                Tls::Required(TlsParameters::new(host.to_owned()).map_err(SmtpConfigError::Tls)?)
            }
            SmtpTls::Implicit => {
                Tls::Wrapper(TlsParameters::new(host.to_owned()).map_err(SmtpConfigError::Tls)?)
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(settings.port)
            .tls(tls)
            .timeout(Some(settings.timeout))
            .pool_config(
                PoolConfig::new()
                    .max_size(settings.pool_size)
                    .idle_timeout(POOL_IDLE),
            );
        if let Some(c) = &settings.credentials {
            builder = builder.credentials(Credentials::new(c.user.clone(), c.password.clone()));
        }
        Ok(SmtpMessenger {
            from,
            timeout: settings.timeout,
            builder,
            pool: Mutex::new(Pool::default()),
            settings,
        })
    }

    /// Says goodbye (`QUIT`) on every idle pooled connection, for a worker
    /// that is shutting down. Sends after it build a new pool.
    pub async fn shutdown(&self) {
        let transport = self.lock().transport.take();
        if let Some(transport) = transport {
            transport.shutdown().await;
        }
    }

    /// One delivery: builds the email, then sends it within the timeout.
    async fn deliver(&self, message: Message) -> Result<(), DeliveryError> {
        let email = self.email(&message)?;
        let (generation, transport) = self.current();
        let sent = tokio::time::timeout(self.timeout, transport.send(email)).await;
        let failure = match sent {
            Ok(Ok(_)) => {
                tracing::debug!(key = %message.key, "the mail server accepted the email");
                return Ok(());
            }
            Ok(Err(e)) => failure(&e, self.timeout),
            Err(_) => {
                self.replace_pool_if(generation);
                DeliveryError::Temporary(format!(
                    "the mail server did not finish taking the email within {}",
                    humantime::format_duration(self.timeout)
                ))
            }
        };
        tracing::warn!(key = %message.key, error = %failure, "email not delivered");
        Err(failure)
    }

    /// The email for `message`, with `message.key` in its `Message-ID` and
    /// [`ATTEMPT_HEADER`]. An unusable recipient address is `Rejected`
    /// without being repeated.
    fn email(&self, message: &Message) -> Result<lettre::Message, DeliveryError> {
        let to: Mailbox = message.to.trim().parse().map_err(|_| {
            DeliveryError::Rejected("the recipient is not a valid email address".to_owned())
        })?;
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .message_id(Some(message_id(&message.key, self.from.email.domain())))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(ATTEMPT_HEADER),
                message.key.clone(),
            ))
            .header(ContentType::TEXT_PLAIN);
        if let Some(subject) = &message.subject {
            builder = builder.subject(subject.as_str());
        }
        // lettre's reasons name what is missing or malformed, never a value.
        builder
            .body(message.body.clone())
            .map_err(|e| DeliveryError::Rejected(format!("the email cannot be built: {e}")))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pool in use and its generation, built if need be. Called only
    /// from a send, so inside the runtime.
    fn current(&self) -> (u64, AsyncSmtpTransport<Tokio1Executor>) {
        let mut pool = self.lock();
        let transport = pool
            .transport
            .get_or_insert_with(|| self.builder.clone().build())
            .clone();
        (pool.generation, transport)
    }

    /// Drops the pool if `generation` is still the one in use, so the next
    /// send builds a new one. The old one closes its connections once the
    /// last send holding it is done.
    fn replace_pool_if(&self, generation: u64) {
        let mut pool = self.lock();
        if pool.generation == generation {
            pool.generation += 1;
            pool.transport = None;
        }
    }
}

impl Drop for SmtpMessenger {
    /// Outside a runtime (a worker's handlers dropped after its runtime),
    /// lettre's pool would panic spawning its cleanup. Its connections die
    /// with the process or its runtime anyway, so it is leaked instead.
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_err() {
            let pool = self.pool.get_mut().unwrap_or_else(PoisonError::into_inner);
            if let Some(transport) = pool.transport.take() {
                std::mem::forget(transport);
            }
        }
    }
}

impl Messenger for SmtpMessenger {
    fn send<'a>(&'a self, message: Message) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(self.deliver(message))
    }
}

/// `<{key}@{domain}>`, the same for every send of one attempt, so a mail
/// server or client that sees a repeated delivery can tell. The key is kept
/// readable: characters a `Message-ID` may not hold, `.` (which may not
/// lead, trail or repeat) and `=` itself become `=XX`, byte by byte, so
/// different keys never share an id.
pub fn message_id(key: &str, domain: &str) -> String {
    let mut left = String::with_capacity(key.len() + 8);
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || (b"!#$%&'*+-/?^_`{|}~".contains(&b)) {
            left.push(char::from(b));
        } else {
            let _ = write!(left, "={b:02X}");
        }
    }
    if left.is_empty() {
        // Never produced by an encoded key, which has no bare `=`.
        left.push('=');
    }
    format!("<{left}@{domain}>")
}

/// What a failed send means for the attempt. Only status codes and lettre's
/// innermost transport cause are repeated: a server's own words often
/// quote the recipient.
fn failure(e: &smtp::Error, timeout: Duration) -> DeliveryError {
    if let Some(code) = e.status() {
        let text = std::error::Error::source(e).map(ToString::to_string);
        return refusal(code, text.as_deref());
    }
    let message = if e.is_timeout() {
        format!(
            "the mail server did not answer within {}",
            humantime::format_duration(timeout)
        )
    } else if e.is_tls() {
        format!("TLS with the mail server failed: {}", innermost(e))
    } else if e.is_response() {
        "the mail server's answer could not be read".to_owned()
    } else if e.is_transport_shutdown() {
        "the SMTP connection pool was shut down".to_owned()
    } else if e.is_client() {
        format!("the email could not be sent: {}", innermost(e))
    } else {
        format!("could not talk to the mail server: {}", innermost(e))
    };
    DeliveryError::Temporary(message)
}

/// A negative answer: `Rejected` when it is about the recipient and
/// permanent, by its enhanced status (RFC 3463 `5.1.x` addressing, `5.2.x`
/// mailbox) or, without one, its code (550 to 553). Every other refusal is
/// `Temporary`: a 4xx says so, and the other 5xx (authentication, relaying,
/// policy) are the server's or our configuration's, which an operator can
/// fix within the step's retries. The recipient is not to blame for those.
fn refusal(code: Code, text: Option<&str>) -> DeliveryError {
    let enhanced = text.and_then(enhanced_status);
    let shown = match enhanced {
        Some(status) => format!("{code} {status}"),
        None => code.to_string(),
    };
    let about_recipient = match enhanced {
        Some(status) => status.starts_with("5.1.") || status.starts_with("5.2."),
        None => matches!(u16::from(code), 550..=553),
    };
    match code.severity {
        Severity::PermanentNegativeCompletion if about_recipient => {
            DeliveryError::Rejected(format!("the mail server refused the recipient ({shown})"))
        }
        Severity::PermanentNegativeCompletion => {
            DeliveryError::Temporary(format!("the mail server refused the email ({shown})"))
        }
        _ => DeliveryError::Temporary(format!("the mail server deferred the email ({shown})")),
    }
}

/// The RFC 3463 enhanced status code that opens a reply's text, if any
/// (`5.1.1 <someone@example.org>: unknown` gives `5.1.1`).
fn enhanced_status(text: &str) -> Option<&str> {
    let first = text.split_whitespace().next()?;
    let mut parts = first.split('.');
    let class = parts.next()?;
    let fine = matches!(class, "2" | "4" | "5")
        && parts
            .by_ref()
            .take(2)
            .filter(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
            .count()
            == 2
        && parts.next().is_none();
    fine.then_some(first)
}

/// The innermost cause, e.g. "Connection refused (os error 111)": the outer
/// layers only repeat it.
fn innermost(e: &smtp::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use lettre::transport::smtp::response::{Category, Detail};

    use super::*;

    fn code(n: u16) -> Code {
        let digit = |d: u16| match d {
            0 => Detail::Zero,
            1 => Detail::One,
            2 => Detail::Two,
            3 => Detail::Three,
            4 => Detail::Four,
            _ => Detail::Five,
        };
        let severity = match n / 100 {
            4 => Severity::TransientNegativeCompletion,
            _ => Severity::PermanentNegativeCompletion,
        };
        let category = match (n / 10) % 10 {
            0 => Category::Syntax,
            3 => Category::Unspecified3,
            _ => Category::MailSystem,
        };
        Code::new(severity, category, digit(n % 10))
    }

    #[test]
    fn message_ids_keep_keys_readable_and_distinct() {
        assert_eq!(
            message_id("case-1/step/1/1", "gov.example"),
            "<case-1/step/1/1@gov.example>"
        );
        assert_eq!(
            message_id("a.b c=d@e", "gov.example"),
            "<a=2Eb=20c=3Dd=40e@gov.example>"
        );
        assert_eq!(message_id("申", "x"), "<=E7=94=B3@x>");
        assert_eq!(message_id("", "x"), "<=@x>");
        assert_ne!(message_id("a.b", "x"), message_id("a=2Eb", "x"));
    }

    #[test]
    fn recipient_refusals_are_permanent_and_the_rest_retryable() {
        let rejected = |e: DeliveryError| matches!(e, DeliveryError::Rejected(_));
        assert!(rejected(refusal(
            code(550),
            Some("5.1.1 <a@b.example>: no such user")
        )));
        assert!(rejected(refusal(code(552), Some("5.2.2 mailbox full"))));
        assert!(rejected(refusal(code(553), None)));
        // Relaying refused and authentication needed are not the recipient's.
        assert!(!rejected(refusal(code(550), Some("5.7.1 relaying denied"))));
        assert!(!rejected(refusal(
            code(530),
            Some("5.7.0 authentication required")
        )));
        assert!(!rejected(refusal(code(554), None)));
        assert!(!rejected(refusal(code(450), Some("4.2.1 try later"))));
        assert!(!rejected(refusal(code(451), None)));
    }

    #[test]
    fn refusals_name_codes_but_never_what_the_server_said() {
        let e = refusal(code(550), Some("5.1.1 <张三@b.example>: no such user"));
        assert_eq!(
            e,
            DeliveryError::Rejected("the mail server refused the recipient (550 5.1.1)".to_owned())
        );
        assert_eq!(
            refusal(code(451), Some("please retry")),
            DeliveryError::Temporary("the mail server deferred the email (451)".to_owned())
        );
        assert_eq!(enhanced_status("5.1.10 x"), Some("5.1.10"));
        assert_eq!(enhanced_status("5.1 x"), None);
        assert_eq!(enhanced_status("5.1.1.1"), None);
        assert_eq!(enhanced_status("3.1.1"), None);
        assert_eq!(enhanced_status(""), None);
    }

    #[test]
    fn settings_are_checked_when_the_messenger_is_built() {
        let ok = SmtpSettings::new(
            "mail.gov.example",
            SmtpTls::StartTls,
            "Docket <noreply@gov.example>",
        );
        assert_eq!(ok.port, 587);
        let built = SmtpMessenger::new(ok.clone()).map(|m| format!("{m:?}"));
        assert!(built.is_ok(), "{built:?}");
        let secret = SmtpSettings {
            credentials: Some(SmtpCredentials {
                user: "docket".into(),
                password: "hunter2".into(),
            }),
            tls: SmtpTls::Implicit,
            ..ok.clone()
        };
        let shown = SmtpMessenger::new(secret.clone()).map(|m| format!("{m:?}"));
        assert!(
            shown.as_ref().is_ok_and(|s| !s.contains("hunter2")),
            "{shown:?}"
        );
        let fails = |s: SmtpSettings| SmtpMessenger::new(s).err().map(|e| e.to_string());
        assert!(
            fails(SmtpSettings {
                tls: SmtpTls::None,
                ..secret
            })
            .is_some()
        );
        assert!(
            fails(SmtpSettings {
                from: "not an address".into(),
                ..ok.clone()
            })
            .is_some()
        );
        assert!(
            fails(SmtpSettings {
                host: " ".into(),
                ..ok.clone()
            })
            .is_some()
        );
        assert!(
            fails(SmtpSettings {
                timeout: Duration::ZERO,
                ..ok.clone()
            })
            .is_some()
        );
        assert!(fails(SmtpSettings { pool_size: 0, ..ok }).is_some());
    }

    #[test]
    fn a_messenger_outlives_its_runtime_without_panicking() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let Ok(runtime) = runtime else {
            panic!("no runtime");
        };
        let settings = SmtpSettings {
            port: 1,
            timeout: Duration::from_secs(2),
            ..SmtpSettings::new("127.0.0.1", SmtpTls::None, "noreply@gov.example")
        };
        let Ok(messenger) = SmtpMessenger::new(settings) else {
            panic!("settings");
        };
        let sent = runtime.block_on(messenger.send(Message {
            channel: "email",
            to: "a@gov.example".to_owned(),
            subject: None,
            body: "b".to_owned(),
            key: "k".to_owned(),
        }));
        assert!(matches!(sent, Err(DeliveryError::Temporary(_))), "{sent:?}");
        drop(runtime);
        drop(messenger);
    }

    #[test]
    fn tls_modes_read_as_configured() {
        assert_eq!("none".parse(), Ok(SmtpTls::None));
        assert_eq!(" STARTTLS ".parse(), Ok(SmtpTls::StartTls));
        assert_eq!("tls".parse(), Ok(SmtpTls::Implicit));
        assert!("ssl".parse::<SmtpTls>().is_err());
        for mode in [SmtpTls::None, SmtpTls::StartTls, SmtpTls::Implicit] {
            assert_eq!(mode.to_string().parse(), Ok(mode));
        }
    }
}
