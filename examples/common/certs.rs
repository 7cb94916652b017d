//! The TLS examples' server settings: the certificate chain and private key in
//! the PEM files named by `WIND_DOWN_TLS_CERT` and `WIND_DOWN_TLS_KEY`, or else a
//! certificate for 127.0.0.1 and localhost signed by itself, made at start
//! (clients must be told to accept it: `curl -k`).

use std::io;
use std::sync::Arc;

use wind_down::hyper::tls::rustls;
use wind_down::hyper::tls::rustls::pki_types::pem::PemObject;
use wind_down::hyper::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub fn server_config() -> io::Result<Arc<rustls::ServerConfig>> {
    let (chain, key) = match (
        std::env::var_os("WIND_DOWN_TLS_CERT"),
        std::env::var_os("WIND_DOWN_TLS_KEY"),
    ) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(io::Error::other)?;
            (
                chain,
                PrivateKeyDer::from_pem_file(key).map_err(io::Error::other)?,
            )
        }
        _ => {
            let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
            let certified = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
            let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
            (vec![certified.cert.der().clone()], key)
        }
    };
    // The crypto provider comes from rustls's crate features: *ring*, which the
    // `tls` feature enables (`ring::default_provider()` itself is deprecated).
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(io::Error::other)?;
    Ok(Arc::new(config))
}
