//! The C header `include/ktmrm.h` is generated from this crate's constants; this test fails when
//! the checked-in header differs (run with `KTMRM_BLESS=1` to rewrite it), and compiles it with a
//! C compiler, when one is installed, to check every layout's size.

use ktmrm_proto::*;
use std::fmt::Write as _;
use std::path::PathBuf;

fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A packed struct: name, comment, (C type, field) pairs.
type Layout = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

fn header() -> String {
    let mut h = String::new();
    let w = &mut h;
    writeln!(
        w,
        "/* ktmrm.h: the ktmrm IOCTL ABI for C and C++ callers of DeviceIoControl."
    )
    .unwrap();
    writeln!(
        w,
        " * Generated from crates/proto by its c_header test; run"
    )
    .unwrap();
    writeln!(
        w,
        " * `KTMRM_BLESS=1 cargo test -p ktmrm-proto --test c_header` to rewrite. Do not edit."
    )
    .unwrap();
    writeln!(
        w,
        " * All fields are little-endian and unaligned (packed); variable parts follow each"
    )
    .unwrap();
    writeln!(
        w,
        " * fixed body in the order its comment gives. See crates/proto/src/request.rs. */"
    )
    .unwrap();
    writeln!(
        w,
        "#ifndef KTMRM_H\n#define KTMRM_H\n\n#include <stdint.h>\n"
    )
    .unwrap();
    writeln!(w, "#define KTMRM_DEVICE_PATH L\"\\\\\\\\.\\\\KtmRm\"").unwrap();
    writeln!(w, "#define KTMRM_PROTOCOL_VERSION {PROTOCOL_VERSION}").unwrap();
    writeln!(w, "#define KTMRM_MAX_KEY_LEN {MAX_KEY_LEN}").unwrap();
    writeln!(w, "#define KTMRM_MAX_VALUE_LEN {MAX_VALUE_LEN}").unwrap();
    writeln!(
        w,
        "#define KTMRM_MAX_DESCRIPTION_CHARS {MAX_DESCRIPTION_CHARS}"
    )
    .unwrap();
    writeln!(w, "#define KTMRM_LIST_MIN_OUTPUT {LIST_MIN_OUTPUT}").unwrap();
    writeln!(w, "#define KTMRM_LIST_MORE 0x{LIST_MORE:X}u").unwrap();
    writeln!(
        w,
        "/* KTMRM_REQUEST_HEADER.Flags bits 0-1: the transaction's isolation level. */"
    )
    .unwrap();
    writeln!(w, "#define KTMRM_ISOLATION_MASK 0x{ISOLATION_MASK:X}u").unwrap();
    for (name, level) in [
        ("UNSTATED", Isolation::Unstated),
        ("READ_COMMITTED", Isolation::ReadCommitted),
        ("SERIALIZABLE", Isolation::Serializable),
    ] {
        writeln!(w, "#define KTMRM_ISOLATION_{name} {}u", level.flags()).unwrap();
    }
    writeln!(w).unwrap();
    for c in Call::ALL {
        let access =
            ["FILE_ANY_ACCESS", "FILE_READ_DATA", "FILE_WRITE_DATA"][c.required_access() as usize];
        writeln!(w, "/* {access} */").unwrap();
        writeln!(
            w,
            "#define IOCTL_KTMRM_{} 0x{:08X}u",
            c.name().to_uppercase(),
            c.code()
        )
        .unwrap();
    }
    writeln!(
        w,
        "\n/* NTSTATUS values ktmrm returns (as in ntstatus.h). */"
    )
    .unwrap();
    for s in NtStatus::ALL {
        let name = s.name().unwrap().trim_start_matches("STATUS_");
        writeln!(
            w,
            "#define KTMRM_STATUS_{name} ((int32_t)0x{:08X}u)",
            s.0 as u32
        )
        .unwrap();
    }
    writeln!(w, "\n#pragma pack(push, 1)").unwrap();
    let structs: &[Layout] = &[
        (
            "KTMRM_REQUEST_HEADER",
            "every request but GET_VERSION starts with this",
            &[
                ("uint16_t", "Version"),
                ("uint16_t", "Flags"),
                ("uint32_t", "BodyLength"),
                ("uint64_t", "Transaction"),
            ],
        ),
        (
            "KTMRM_BEGIN_BODY",
            "then DescriptionChars UTF-16LE units",
            &[
                ("uint32_t", "TimeoutMs"),
                ("uint16_t", "DescriptionChars"),
                ("uint16_t", "Reserved"),
            ],
        ),
        (
            "KTMRM_PUT_BODY",
            "then KeyLength key bytes, then ValueLength value bytes",
            &[
                ("uint16_t", "KeyLength"),
                ("uint16_t", "Reserved"),
                ("uint32_t", "ValueLength"),
            ],
        ),
        (
            "KTMRM_KEY_BODY",
            "GET and DELETE; then KeyLength key bytes",
            &[("uint16_t", "KeyLength"), ("uint16_t", "Reserved")],
        ),
        (
            "KTMRM_LIST_BODY",
            "then the prefix, then the cursor",
            &[
                ("uint16_t", "PrefixLength"),
                ("uint16_t", "CursorLength"),
                ("uint32_t", "MaxKeys"),
            ],
        ),
        (
            "KTMRM_VERSION_INFO",
            "the GET_VERSION answer",
            &[
                ("uint16_t", "ProtocolVersion"),
                ("uint16_t", "Reserved"),
                ("uint32_t", "Size"),
                ("uint32_t", "MaxKeyLength"),
                ("uint32_t", "MaxValueLength"),
                ("uint32_t", "MaxLiveTransactions"),
                ("uint32_t", "MaxWriteSet"),
                ("uint64_t", "MaxKeys"),
                ("uint64_t", "MaxBytes"),
                ("uint32_t", "MaxDescriptionChars"),
                ("uint32_t", "Reserved2"),
            ],
        ),
        (
            "KTMRM_BEGIN_ANSWER",
            "the BEGIN answer: a handle valid in the caller's process",
            &[("uint64_t", "Transaction")],
        ),
        (
            "KTMRM_GET_ANSWER",
            "then ValueLength value bytes",
            &[("uint32_t", "ValueLength"), ("uint32_t", "Reserved")],
        ),
        (
            "KTMRM_LIST_ANSWER",
            "then Count entries: uint16_t length, key bytes",
            &[("uint32_t", "Count"), ("uint32_t", "Flags")],
        ),
    ];
    let mut sizes = Vec::new();
    for (name, doc, fields) in structs {
        writeln!(w, "\n/* {doc} */\ntypedef struct {name} {{").unwrap();
        let mut size = 0;
        for (ty, f) in *fields {
            writeln!(w, "    {ty} {f};").unwrap();
            size += if *ty == "uint64_t" {
                8
            } else if *ty == "uint32_t" {
                4
            } else {
                2
            };
        }
        writeln!(w, "}} {name};").unwrap();
        let from_crate = match *name {
            "KTMRM_REQUEST_HEADER" => Some(HEADER_LEN),
            "KTMRM_VERSION_INFO" => Some(VERSION_LEN),
            "KTMRM_BEGIN_ANSWER" => Some(BEGIN_LEN),
            "KTMRM_GET_ANSWER" => Some(GET_HEADER_LEN),
            "KTMRM_LIST_ANSWER" => Some(LIST_HEADER_LEN),
            _ => None,
        };
        assert!(
            from_crate.is_none_or(|n| n == size),
            "{name}: {size} bytes in the header"
        );
        sizes.push((name.to_string(), size));
    }
    writeln!(w, "\n/* the STATS answer */\ntypedef struct KTMRM_STATS {{").unwrap();
    writeln!(w, "    uint32_t Size;\n    uint32_t FieldCount;").unwrap();
    for f in Stats::FIELDS {
        writeln!(w, "    uint64_t {};", camel(f)).unwrap();
    }
    writeln!(w, "}} KTMRM_STATS;\n#pragma pack(pop)\n").unwrap();
    writeln!(w, "#ifdef __cplusplus\n#define KTMRM_STATIC_ASSERT static_assert\n#else\n#define KTMRM_STATIC_ASSERT _Static_assert\n#endif").unwrap();
    sizes.push(("KTMRM_STATS".into(), STATS_LEN));
    for (name, size) in sizes {
        writeln!(
            w,
            "KTMRM_STATIC_ASSERT(sizeof({name}) == {size}, \"{name} layout\");"
        )
        .unwrap();
    }
    writeln!(w, "\n#endif /* KTMRM_H */").unwrap();
    h
}

#[test]
fn checked_in_header_matches_the_crate() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include/ktmrm.h");
    let want = header();
    if std::env::var_os("KTMRM_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "include/ktmrm.h is stale: run KTMRM_BLESS=1 cargo test -p ktmrm-proto --test c_header"
    );
    assert_eq!(VERSION_LEN, 48);
    assert_eq!(HEADER_LEN, 16);
}

#[test]
fn header_compiles_as_c11_and_cpp11() {
    let Ok(cc) = which_cc() else {
        eprintln!("no C compiler found; skipping the compile check");
        return;
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include");
    for (std, lang) in [("-std=c11", "c"), ("-std=c++11", "c++")] {
        let out = std::process::Command::new(cc)
            .args([std, "-Wall", "-Werror", "-fsyntax-only", "-x", lang, "-"])
            .arg(format!("-I{}", path.display()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(b"#include <ktmrm.h>\nint main(void){return 0;}\n")?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(
            out.status.success(),
            "{lang}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn which_cc() -> Result<&'static str, ()> {
    for cc in ["cc", "gcc", "clang"] {
        if std::process::Command::new(cc)
            .arg("--version")
            .output()
            .is_ok()
        {
            return Ok(cc);
        }
    }
    Err(())
}
