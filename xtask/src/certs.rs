//! `cargo xtask dev-certs [DIR]`: a CA and a server certificate for the collectors that listen
//! beyond loopback (compose, Kubernetes), so that `otel-collector/auth.yaml` can be tried without
//! a PKI of one's own. The files take the names of a `kubernetes.io/tls` Secret (`tls.crt`,
//! `tls.key`, `ca.crt`): compose mounts the directory as it is, `kubectl create secret` reads the
//! same files (deploy/kubernetes/README.md).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use otlp_sink::TestCa;

use crate::kubernetes::NAMESPACE;

/// Where `dev-certs` writes without an argument, from the repository root (ignored by git).
const DEFAULT_DIR: &str = ".stack/certs";

/// The collectors' Kubernetes Services that producers reach over TLS: the agent (the bot's
/// endpoint) and the gateways' headless Service (the agents' server name).
pub(crate) const KUBERNETES_SERVICES: [&str; 2] = ["otel-agent", "otel-gateway-headless"];

/// The names the server certificate is valid for: loopback (the host's view of compose's
/// published ports), compose's service name, and each Kubernetes Service by its short,
/// namespaced and full name.
pub(crate) fn server_names() -> Vec<String> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "otel-collector"]
        .map(String::from)
        .into();
    for service in KUBERNETES_SERVICES {
        names.push(service.to_owned());
        names.push(format!("{service}.{NAMESPACE}.svc"));
        names.push(format!("{service}.{NAMESPACE}.svc.cluster.local"));
    }
    names
}

/// The files [`write`] makes.
pub(crate) struct CertFiles {
    /// The CA certificate producers trust (`OTEL_EXPORTER_OTLP_CERTIFICATE`).
    pub(crate) ca: PathBuf,
    /// The server certificate and its key (`INV_TLS_CERT_FILE`, `INV_TLS_KEY_FILE`).
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// A new CA named `ca_name` and a server certificate signed by it for [`server_names`], written
/// into `dir` (over what is there); the key readable by its owner only. The CA's own key is not
/// kept: to change a name, make all three again.
pub(crate) fn write(dir: &Path, ca_name: &str) -> Result<CertFiles> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ca = TestCa::new(ca_name);
    let names = server_names();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let server = ca.server_for(&names);
    let files = CertFiles {
        ca: dir.join("ca.crt"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    fs::write(&files.ca, ca.cert_pem())?;
    fs::write(&files.cert, &server.cert_pem)?;
    // Mode 0600 applies only when the file is created: a key left by an earlier run is removed.
    let _ = fs::remove_file(&files.key);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&files.key)
        .and_then(|mut f| f.write_all(server.key_pem.as_bytes()))
        .with_context(|| format!("cannot write {}", files.key.display()))?;
    Ok(files)
}

/// `dev-certs [DIR]`: refuses a directory that already has a key (producers and Secrets may trust
/// its CA).
pub(crate) fn dev_certs(root: &Path, args: &[String]) -> Result<()> {
    let dir = match args {
        [] => root.join(DEFAULT_DIR),
        [dir] => PathBuf::from(dir),
        other => bail!("dev-certs takes one directory at most, not {other:?}"),
    };
    if dir.join("tls.key").exists() {
        bail!(
            "{} already holds a key (tls.key); remove the directory to make new certificates",
            dir.display()
        );
    }
    let files = write(&dir, "inventory-otel dev CA")?;
    eprintln!(
        "xtask: wrote {} (the CA producers trust), {} and {} (the collectors' certificate and key) for {}",
        files.ca.display(),
        files.cert.display(),
        files.key.display(),
        server_names().join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// The three files, the key for its owner only (also over an older key), and dev-certs
    /// refuses to replace them.
    #[test]
    fn dev_certs_writes_the_tls_secret_files_once() {
        let dir = std::env::temp_dir().join(format!("xtask-dev-certs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("a temporary directory");
        fs::write(dir.join("tls.key"), "old").expect("an old key");
        fs::set_permissions(dir.join("tls.key"), fs::Permissions::from_mode(0o644))
            .expect("its mode");
        let files = write(&dir, "test CA").expect("certificates");
        for (file, begins) in [
            (&files.ca, "-----BEGIN CERTIFICATE-----"),
            (&files.cert, "-----BEGIN CERTIFICATE-----"),
            (&files.key, "-----BEGIN PRIVATE KEY-----"),
        ] {
            let text = fs::read_to_string(file).expect("a written file");
            assert!(text.starts_with(begins), "{}: {text}", file.display());
        }
        let mode = fs::metadata(&files.key)
            .expect("the key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = dev_certs(Path::new("/"), &[dir.display().to_string()]);
        assert!(again.is_err_and(|e| e.to_string().contains("already holds a key")));
        let _ = fs::remove_dir_all(&dir);
    }
}
