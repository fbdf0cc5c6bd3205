//! Mutual TLS 1.3 from ed25519 node keys. Each side presents a self-signed certificate (rcgen)
//! whose subject public key is its node key; the TLS handshake's signature proves it holds the
//! secret. No certificate authority is involved: the client pins the controller's node key, and
//! the controller reads the client's node key and decides membership in the control protocol.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use wiremesh_core::keys::{NodePublicKey, NodeSecret};

/// The ALPN protocol of the control channel.
pub const ALPN: &[u8] = b"wiremesh-control/1";
/// The name clients connect to; certificates are pinned by key, not checked against names.
pub const SERVER_NAME: &str = "wiremesh-controller";

/// PKCS#8 v1 (RFC 8410) of an ed25519 key: this prefix, then the 32-byte seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// SubjectPublicKeyInfo of an ed25519 key: this prefix, then the 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make a certificate from the node key: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot set up TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot set up QUIC's TLS: {0}")]
    Quic(String),
}

/// A self-signed certificate for `secret` and the matching private key.
pub fn certificate(
    secret: &NodeSecret,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    der.extend_from_slice(secret.seed_bytes());
    let key = PrivatePkcs8KeyDer::from(der);
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&key, &rcgen::PKCS_ED25519)?;
    let cert = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])?.self_signed(&pair)?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(key)))
}

/// The node key in a certificate: its SubjectPublicKeyInfo, which must be an ed25519 key. A
/// minimal DER walk over `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version,
/// serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ... }, ... }`.
pub fn node_key_of(cert: &[u8]) -> Option<NodePublicKey> {
    let (tag, certificate, _) = tlv(cert)?;
    let (tbs_tag, tbs, _) = tlv(certificate).filter(|_| tag == 0x30)?;
    if tbs_tag != 0x30 {
        return None;
    }
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2;
    }
    for _ in 0..5 {
        rest = tlv(rest)?.2;
    }
    let (_, _, after) = tlv(rest)?;
    let spki = &rest[..rest.len() - after.len()];
    let key = spki.strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    let key: [u8; 32] = key.try_into().ok()?;
    Some(NodePublicKey::from_bytes(key))
}

/// One DER element: (tag, content, what follows). Definite lengths up to 0xffff only.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => {
            let (&len, rest) = rest.split_first()?;
            (usize::from(len), rest)
        }
        0x82 => {
            let bytes: [u8; 2] = rest.get(..2)?.try_into().ok()?;
            (usize::from(u16::from_be_bytes(bytes)), &rest[2..])
        }
        _ => return None,
    };
    let content = rest.get(..len)?;
    Some((tag, content, &rest[len..]))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any well-formed ed25519 certificate and, when `pin` is set, only that node key. The
/// handshake signature is checked with the certificate's key, ed25519 only.
#[derive(Debug)]
struct NodeKeyVerifier {
    pin: Option<NodePublicKey>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl NodeKeyVerifier {
    fn new(pin: Option<NodePublicKey>) -> Self {
        Self {
            pin,
            algorithms: provider().signature_verification_algorithms,
        }
    }

    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let key = node_key_of(cert).ok_or_else(|| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        match self.pin {
            Some(pin) if pin != key => Err(rustls::Error::General(format!(
                "the peer's node key is {key}, not the pinned {pin}"
            ))),
            _ => Ok(()),
        }
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::NoSignatureSchemesInCommon,
            ));
        }
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for NodeKeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for NodeKeyVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The controller's QUIC server configuration: TLS 1.3 only, a client certificate required.
pub fn server_config(
    identity: &NodeSecret,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ServerConfig, TlsError> {
    let (cert, key) = certificate(identity)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(NodeKeyVerifier::new(None)))
        .with_single_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(transport);
    Ok(config)
}

/// An agent's QUIC client configuration: it presents `identity` and accepts only `controller`.
pub fn client_config(
    identity: &NodeSecret,
    controller: NodePublicKey,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ClientConfig, TlsError> {
    let (cert, key) = certificate(identity)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NodeKeyVerifier::new(Some(controller))))
        .with_client_auth_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport);
    Ok(config)
}

/// The node key the peer of `connection` proved in the handshake.
pub fn peer_node_key(connection: &quinn::Connection) -> Option<NodePublicKey> {
    let identity = connection.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    node_key_of(certs.first()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_carries_the_node_key() {
        let secret = NodeSecret::from_seed([3; 32]);
        let (cert, _) = certificate(&secret).unwrap();
        assert_eq!(node_key_of(&cert), Some(secret.public_key()));
        // Any cut or flipped length byte is refused, never a panic.
        for cut in 0..cert.len() {
            let _ = node_key_of(&cert[..cut]);
        }
        assert_eq!(node_key_of(&[]), None);
        assert_eq!(node_key_of(&[0x30, 0x84, 0xff]), None);
    }
}
