//! The installed-software inventory: the dpkg and rpm parsers on realistic fixtures (source
//! packages, Multi-Arch, multilib, several kernels), deltas
//! that rebuild the list they describe, the real dpkg database of this machine when it has one,
//! and the report's exchange with a server (a real TLS listener on loopback answering scripted
//! HTTP/1.1 responses), including its fall-back to the whole list on 409.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use rollgate_agent::client::Client;
use rollgate_agent::software::software_digest;
use rollgate_agent::software::{delta, parse_dpkg_status, parse_rpm_query, report, scan, Acknowledged};
use rollgate_agent::state::StateDir;
use rollgate_wire::SoftwareDelta;

/// Paragraphs as dpkg writes them (copied from a Debian 12 system), plus the states and
/// Multi-Arch cases a real fleet has: a foreign libc6 left at an older version by a partial
/// upgrade, a foreign zlib1g at the native version, a held package, a removed one whose
/// configuration files remain, and one whose removal failed half-way.
const DPKG_STATUS: &str = "\
Package: adduser
Status: install ok installed
Priority: important
Section: admin
Installed-Size: 686
Maintainer: Debian Adduser Developers <adduser@packages.debian.org>
Architecture: all
Multi-Arch: foreign
Version: 3.134
Depends: passwd
Suggests: liblocale-gettext-perl, perl, cron, quota
Conffiles:
 /etc/adduser.conf cc3493ecd2d09837ffdcc3e25fdfff18
 /etc/deluser.conf 11a06baf8245fd8d690b99024d228c1f
Description: add and remove users and groups
 This package includes the 'adduser' and 'deluser' commands for creating
 and removing users.
 .
 Adding users with 'adduser' is much easier than adding them manually.

Package: bsdutils
Essential: yes
Status: install ok installed
Priority: required
Section: utils
Installed-Size: 355
Maintainer: util-linux packagers <util-linux@packages.debian.org>
Architecture: amd64
Multi-Arch: foreign
Source: util-linux (2.38.1-5+deb12u3)
Version: 1:2.38.1-5+deb12u3
Pre-Depends: libc6 (>= 2.34), libsystemd0
Recommends: bsdextrautils
Description: basic utilities from 4.4BSD-Lite
 This package contains the bare minimum of BSD utilities needed for a Debian
 system: logger, renice, script, scriptlive, scriptreplay and wall.
Homepage: https://www.kernel.org/pub/linux/utils/util-linux/

Package: dpkg
Essential: yes
Status: install ok installed
Priority: required
Section: admin
Installed-Size: 6409
Maintainer: Dpkg Developers <debian-dpkg@lists.debian.org>
Architecture: amd64
Multi-Arch: foreign
Version: 1.21.22
Depends: tar (>= 1.28-1)
Pre-Depends: libbz2-1.0, libc6 (>= 2.34), liblzma5 (>= 5.4.0), zlib1g (>= 1:1.1.4)
Conffiles:
 /etc/alternatives/README 7be88b21f7e386c8d5a8790c2461c92b
 /etc/dpkg/dpkg.cfg f4413ffb515f8f753624ae3bb365b81b
Description: Debian package management system
 This package provides the low-level infrastructure for handling the
 installation and removal of Debian software packages.
Homepage: https://wiki.debian.org/Teams/Dpkg

Package: libc6
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 13001
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u14
Replaces: libc6-amd64
Depends: libgcc-s1
Conffiles:
 /etc/ld.so.conf.d/x86_64-linux-gnu.conf d4e7a7b88a71b5ffd9e2644e71a0cfab
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.
Homepage: https://www.gnu.org/software/libc/libc.html

Package: libc6
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 12700
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: i386
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u13
Depends: libgcc-s1
Conffiles:
 /etc/ld.so.conf.d/i386-linux-gnu.conf 59bc1f7ef3ad6d5d0d2c7a6b6fc2d2b1
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.

Package: zlib1g
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 168
Maintainer: Mark Brown <broonie@debian.org>
Architecture: amd64
Multi-Arch: same
Source: zlib
Version: 1:1.2.13.dfsg-1
Provides: libz1
Depends: libc6 (>= 2.14)
Description: compression library - runtime
 zlib is a library implementing the deflate compression method found
 in gzip and PKZIP.  This package includes the shared library.
Homepage: http://zlib.net/

Package: zlib1g
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 172
Maintainer: Mark Brown <broonie@debian.org>
Architecture: i386
Multi-Arch: same
Source: zlib
Version: 1:1.2.13.dfsg-1
Provides: libz1
Depends: libc6 (>= 2.14)
Description: compression library - runtime
 zlib is a library implementing the deflate compression method found
 in gzip and PKZIP.  This package includes the shared library.

Package: openssh-server
Status: hold ok installed
Priority: optional
Section: net
Installed-Size: 1987
Maintainer: Debian OpenSSH Maintainers <debian-ssh@lists.debian.org>
Architecture: amd64
Source: openssh
Version: 1:9.2p1-2+deb12u3
Depends: libc6 (>= 2.36), openssh-client (= 1:9.2p1-2+deb12u3)
Description: secure shell (SSH) server, for secure access from remote machines
 This is the portable version of OpenSSH.

Package: apache2
Status: deinstall ok config-files
Priority: optional
Section: httpd
Installed-Size: 564
Maintainer: Debian Apache Maintainers <debian-apache@lists.debian.org>
Architecture: amd64
Version: 2.4.62-1~deb12u1
Conffiles:
 /etc/apache2/apache2.conf 354c9e6d2b88a0a3e0548f853840674c
Description: Apache HTTP Server

Package: telnetd
Status: purge ok half-installed
Priority: optional
Section: net
Architecture: amd64
Version: 0.17+2.4-2+deb12u1
Description: telnet server
";

/// What [`DPKG_STATUS`] holds installed.
fn dpkg_expected() -> BTreeMap<String, String> {
    map(&[
        ("adduser", "3.134"),
        ("bsdutils", "1:2.38.1-5+deb12u3"),
        ("dpkg", "1.21.22"),
        ("libc6", "2.36-9+deb12u14"),
        ("libc6:i386", "2.36-9+deb12u13"),
        ("openssh-server", "1:9.2p1-2+deb12u3"),
        // No `Source:`: the package is its own source.
        ("src:adduser", "3.134"),
        ("src:dpkg", "1.21.22"),
        // The two libc6 instances disagree: the lower one.
        ("src:glibc", "2.36-9+deb12u13"),
        ("src:openssh", "1:9.2p1-2+deb12u3"),
        // `Source: util-linux (2.38.1-5+deb12u3)`: the version in parentheses, without the
        // binary's epoch.
        ("src:util-linux", "2.38.1-5+deb12u3"),
        ("src:zlib", "1:1.2.13.dfsg-1"),
        ("zlib1g", "1:1.2.13.dfsg-1"),
    ])
}

/// Binary packages whose advisories name their source: nginx-full and nginx-common from nginx,
/// disagreeing after a partial upgrade (by text `1.22.1-10` sorts first, by dpkg `1.22.1-9`);
/// libssl3 (`Source: openssl`) upgraded past openssl (a `~` version, lower by dpkg); a binNMU
/// whose source version is in parentheses; a package removed but for its configuration, which
/// yields no source entry.
const DPKG_SOURCES: &str = "\
Package: nginx-common
Status: install ok installed
Architecture: all
Multi-Arch: foreign
Source: nginx
Version: 1.22.1-10
Description: small, powerful, scalable web/proxy server - common files

Package: nginx-full
Status: install ok installed
Architecture: amd64
Source: nginx
Version: 1.22.1-9
Depends: nginx-common (= 1.22.1-9)
Description: nginx web/proxy server (standard version)

Package: libssl3
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: openssl
Version: 3.0.15-1
Description: Secure Sockets Layer toolkit - shared libraries

Package: openssl
Status: install ok installed
Architecture: amd64
Version: 3.0.15-1~deb12u1
Description: Secure Sockets Layer toolkit - cryptographic utility

Package: libfoo1
Status: install ok installed
Architecture: amd64
Source: foo (1.0-1)
Version: 1.0-1+b1
Description: rebuilt without a source change (binNMU)

Package: apache2-bin
Status: deinstall ok config-files
Architecture: amd64
Source: apache2
Version: 2.4.62-1~deb12u1
Description: Apache HTTP Server (modules and other binary files)
";

#[test]
fn dpkg_binaries_also_list_their_source_at_its_lowest_version() {
    let expected = map(&[
        ("libfoo1", "1.0-1+b1"),
        ("libssl3", "3.0.15-1"),
        ("nginx-common", "1.22.1-10"),
        ("nginx-full", "1.22.1-9"),
        ("openssl", "3.0.15-1~deb12u1"),
        ("src:foo", "1.0-1"),
        ("src:nginx", "1.22.1-9"),
        ("src:openssl", "3.0.15-1~deb12u1"),
    ]);
    assert_eq!(parse_dpkg_status(DPKG_SOURCES), expected);
    let reversed: String = DPKG_SOURCES
        .split("\n\n")
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|p| format!("{}\n\n", p.trim_end()))
        .collect();
    assert_eq!(parse_dpkg_status(&reversed), expected);
}

/// Output of `rpm -qa --qf '%{NAME}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\t%{ARCH}\n'` on a RHEL 9
/// system: database order, imported signing keys, two kernels, multilib glibc at one version
/// for both architectures, and multilib openssl-libs with the `i686` copy left behind.
const RPM_QUERY: &str = "\
gpg-pubkey\t0:fd431d51-4ae0493b\t(none)
bash\t0:5.1.8-9.el9\tx86_64
openssl-libs\t1:3.0.7-27.el9\tx86_64
kernel-core\t0:5.14.0-427.13.1.el9_4\tx86_64
glibc\t0:2.34-100.el9_4.2\tx86_64
gpg-pubkey\t0:5a6340b3-6229229e\t(none)
kernel-core\t0:5.14.0-362.24.1.el9_3\tx86_64
glibc\t0:2.34-100.el9_4.2\ti686
openssl-libs\t1:3.0.7-25.el9_3\ti686
tzdata\t0:2024a-1.el9\tnoarch
vim-minimal\t2:8.2.2637-20.el9_1\tx86_64
";

fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn a_dpkg_status_file_yields_its_installed_packages() {
    assert_eq!(parse_dpkg_status(DPKG_STATUS), dpkg_expected());
}

#[test]
fn a_dpkg_status_file_with_crlf_line_ends_reads_the_same() {
    assert_eq!(parse_dpkg_status(&DPKG_STATUS.replace('\n', "\r\n")), dpkg_expected());
}

#[test]
fn rpm_query_output_yields_the_lowest_copy_under_the_plain_name_and_newer_architectures_apart() {
    let expected = map(&[
        ("bash", "5.1.8-9.el9"),
        ("glibc", "2.34-100.el9_4.2"),
        ("kernel-core", "5.14.0-362.24.1.el9_3"),
        ("openssl-libs", "1:3.0.7-25.el9_3"),
        ("openssl-libs:x86_64", "1:3.0.7-27.el9"),
        ("tzdata", "2024a-1.el9"),
        ("vim-minimal", "2:8.2.2637-20.el9_1"),
    ]);
    assert_eq!(parse_rpm_query(RPM_QUERY), expected);
    let reversed: String = RPM_QUERY.lines().rev().map(|line| format!("{line}\n")).collect();
    assert_eq!(parse_rpm_query(&reversed), expected);
}

/// What the server does with a delta: the list it describes.
fn apply(base: &BTreeMap<String, String>, change: &SoftwareDelta) -> BTreeMap<String, String> {
    let mut list = if change.base.is_some() { base.clone() } else { BTreeMap::new() };
    for name in &change.remove {
        list.remove(name);
    }
    list.extend(change.upsert.clone());
    list
}

#[test]
fn a_delta_rebuilds_the_current_list_from_the_acknowledged_one() {
    let before = parse_dpkg_status(DPKG_STATUS);
    let ack = Acknowledged { source: "dpkg".into(), digest: software_digest(&before), software: before.clone() };
    let upgraded = DPKG_STATUS
        .replace("Version: 2.36-9+deb12u13", "Version: 2.36-9+deb12u14")
        .replace("Status: deinstall ok config-files", "Status: install ok installed")
        .replace("Package: adduser", "Package: adduser-ng");
    let current = parse_dpkg_status(&upgraded);
    let change = delta(Some(&ack), "dpkg", &current).unwrap();
    assert_eq!(change.base.as_deref(), Some(ack.digest.as_str()));
    assert_eq!(change.remove, ["adduser", "libc6:i386", "src:adduser"]);
    let upsert = map(&[
        ("adduser-ng", "3.134"),
        ("apache2", "2.4.62-1~deb12u1"),
        ("src:adduser-ng", "3.134"),
        ("src:apache2", "2.4.62-1~deb12u1"),
        ("src:glibc", "2.36-9+deb12u14"),
    ]);
    assert_eq!(change.upsert, upsert);
    let rebuilt = apply(&before, &change);
    assert_eq!(rebuilt, current);
    assert_eq!(software_digest(&rebuilt), change.digest);
}

#[tokio::test]
async fn this_machines_dpkg_database_lists_dpkg() {
    if !std::path::Path::new("/var/lib/dpkg/status").exists() {
        println!("SKIPPED: no dpkg database");
        return;
    }
    let (source, software) = scan().await.unwrap();
    assert_eq!(source, "dpkg");
    assert!(software.contains_key("dpkg"), "{} packages, dpkg not among them", software.len());
    assert!(software.contains_key("src:dpkg"), "{} packages, src:dpkg not among them", software.len());
}

/// One request the scripted server received.
#[derive(Debug)]
struct Received {
    path: String,
    delta: SoftwareDelta,
}

fn decoded(requests: &common::Requests) -> Vec<Received> {
    let requests = requests.lock().unwrap();
    requests
        .iter()
        .map(|(path, body)| Received { path: path.clone(), delta: serde_json::from_slice(body).unwrap() })
        .collect()
}

const BASE_MISMATCH: &str =
    r#"{"error":{"code":"software_base_mismatch","message":"the base is not the list held here"}}"#;

#[tokio::test]
async fn the_report_sends_changes_falls_back_to_the_whole_list_on_409_and_keeps_what_was_accepted() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = rollgate_pki::Ca::generate("test CA").unwrap();
    let answers = vec![(204, ""), (409, BASE_MISMATCH), (204, ""), (500, r#"{"error":"down"}"#)];
    let (addr, requests) = common::scripted_server(&ca, answers).await;
    let client = Client::anonymous(vec![format!("https://{addr}")], ca.cert_pem()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let first = map(&[("bash", "5.2"), ("dpkg", "1.21.22")]);
    let second = map(&[("bash", "5.2.1"), ("dpkg", "1.21.22")]);
    let acknowledged = || state.read_json::<Acknowledged>("software.json").unwrap().unwrap();

    // No acknowledged list: the whole list, accepted and kept.
    report(&state, &client, "dpkg", &first).await.unwrap();
    assert_eq!(acknowledged().software, first);
    // Unchanged: nothing is sent (the server would answer 409 otherwise).
    report(&state, &client, "dpkg", &first).await.unwrap();
    // Changed: the change, refused with 409, then the whole list, accepted.
    report(&state, &client, "dpkg", &second).await.unwrap();
    assert_eq!(
        acknowledged(),
        Acknowledged { source: "dpkg".into(), digest: software_digest(&second), software: second.clone() }
    );
    // A server failure leaves the acknowledged list as it was.
    let third = map(&[("bash", "5.2.1")]);
    assert!(report(&state, &client, "dpkg", &third).await.is_err());
    assert_eq!(acknowledged().software, second);

    let received = decoded(&requests);
    assert!(received.iter().all(|r| r.path == "/v1/agent/software"), "{received:?}");
    let sent: Vec<&SoftwareDelta> = received.iter().map(|r| &r.delta).collect();
    let change =
        |base: &BTreeMap<String, String>, to: &BTreeMap<String, String>, upsert, remove: &[&str]| SoftwareDelta {
            base: Some(software_digest(base)),
            digest: software_digest(to),
            source: "dpkg".into(),
            upsert: map(upsert),
            remove: remove.iter().map(|r| r.to_string()).collect(),
        };
    let whole = |to: &BTreeMap<String, String>| SoftwareDelta {
        base: None,
        digest: software_digest(to),
        source: "dpkg".into(),
        upsert: to.clone(),
        remove: Vec::new(),
    };
    let expected = [
        whole(&first),
        change(&first, &second, &[("bash", "5.2.1")], &[]),
        whole(&second),
        change(&second, &third, &[], &["dpkg"]),
    ];
    assert_eq!(sent, expected.iter().collect::<Vec<_>>());
}
