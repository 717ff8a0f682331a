//! What a certificate says about itself beyond identity: its serial number
//! and its validity period.
//!
//! Serial numbers are written one way everywhere owlet shows or compares
//! them (the CA's register, the CRL check, the SOC's agents table, logs):
//! lower-case hex of the DER integer's magnitude, leading zero bytes
//! stripped, no separators ([`serial_hex`]). Two spellings of one serial
//! would let a revoked certificate pass a string comparison.
//!
//! Like [`crate::identity`], this module parses without checking signatures:
//! use it on certificates rustls has verified, or on the agent's own files.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;

use crate::error::{Result, TlsError};

/// Serial number and validity period of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// [`serial_hex`] of the serial number.
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// Reads serial and validity from a DER certificate.
pub fn cert_info(cert: &CertificateDer<'_>) -> Result<CertInfo> {
    let x509 = parse(cert)?;
    let validity = x509.validity();
    Ok(CertInfo {
        serial: serial_hex(x509.raw_serial()),
        not_before: system_time(validity.not_before.timestamp()),
        not_after: system_time(validity.not_after.timestamp()),
    })
}

/// Parses a DER certificate (no signature check).
pub(crate) fn parse<'a>(
    cert: &'a CertificateDer<'_>,
) -> Result<x509_parser::certificate::X509Certificate<'a>> {
    x509_parser::parse_x509_certificate(cert.as_ref())
        .map(|(_, x509)| x509)
        .map_err(|e| TlsError::CertParse {
            path: None,
            detail: e.to_string(),
        })
}

/// The canonical spelling of a serial number (see the module doc) from the
/// big-endian bytes of its DER integer.
pub fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    let digits: String = raw[start..].iter().map(|b| format!("{b:02x}")).collect();
    if digits.is_empty() {
        "00".to_string()
    } else {
        digits
    }
}

/// Unix seconds as a `SystemTime` (before 1970 clamps to the epoch: no
/// certificate owlet deals with starts that early).
fn system_time(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SerialNumber};

    #[test]
    fn serials_have_one_spelling() {
        assert_eq!(serial_hex(&[0x00, 0x8f, 0x01]), "8f01");
        assert_eq!(serial_hex(&[0x7f, 0x00]), "7f00");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[]), "00");
    }

    #[test]
    fn serial_and_validity_are_read() {
        let mut params = CertificateParams::default();
        // High bit set: DER adds a leading zero byte, the spelling does not.
        params.serial_number = Some(SerialNumber::from_slice(&[0x80, 0x01, 0x02]));
        params.not_before = time::OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(2_000_000_000).unwrap();
        let cert = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
        let info = cert_info(cert.der()).unwrap();
        assert_eq!(info.serial, "800102");
        assert_eq!(info.not_before, UNIX_EPOCH + Duration::from_secs(1_000_000));
        assert_eq!(
            info.not_after,
            UNIX_EPOCH + Duration::from_secs(2_000_000_000)
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(cert_info(&CertificateDer::from(vec![1, 2, 3])).is_err());
    }
}
