use super::*;

fn id(dns: &[&str], uris: &[&str], cn: Option<&str>) -> Identity {
    Identity {
        dns: dns.iter().map(|s| s.to_string()).collect(),
        uris: uris.iter().map(|s| s.to_string()).collect(),
        cn: cn.map(str::to_string),
    }
}

#[test]
fn patterns_parse_or_say_why_not() {
    use IdentityPattern::*;
    let ok = [
        ("*", Any),
        ("orders.corp", Dns("orders.corp".into())),
        ("*.Corp.Example", DnsWildcard(".corp.example".into())),
        (
            "spiffe://corp/ns/a/sa/orders",
            Uri("spiffe://corp/ns/a/sa/orders".into()),
        ),
        (
            "spiffe://corp/ns/a/*",
            UriPrefix("spiffe://corp/ns/a/".into()),
        ),
    ];
    for (text, expected) in ok {
        assert_eq!(IdentityPattern::parse(text), Ok(expected), "{text}");
    }
    for bad in [
        "",
        "a b",
        "*corp",
        "a.*.corp",
        "*.",
        "**.corp",
        "spiffe://corp/*/sa",
        "spiffe://corp/ns*",
    ] {
        assert!(IdentityPattern::parse(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn each_pattern_matches_its_kind_of_name_only() {
    let p = |t: &str| IdentityPattern::parse(t).unwrap();
    let svc = id(
        &["api.corp.example"],
        &["spiffe://corp/ns/a/sa/orders"],
        None,
    );
    let cn_only = id(&[], &[], Some("Legacy.Client"));
    let cases: &[(&str, &Identity, bool)] = &[
        ("*", &svc, true),
        ("API.corp.example", &svc, true),
        ("corp.example", &svc, false),
        ("*.corp.example", &svc, true),
        ("*.example", &svc, false),
        ("*.api.corp.example", &svc, false),
        ("spiffe://corp/ns/a/sa/orders", &svc, true),
        ("spiffe://corp/ns/a/sa/ORDERS", &svc, false),
        ("spiffe://corp/ns/a/*", &svc, true),
        ("spiffe://corp/ns/b/*", &svc, false),
        ("spiffe://corp/ns/a/sa/orders/*", &svc, false),
        // a DNS pattern never matches a URI and the other way round
        ("spiffe://api.corp.example", &svc, false),
        ("legacy.client", &cn_only, true),
        ("*.client", &cn_only, true),
        ("spiffe://corp/ns/a/*", &cn_only, false),
    ];
    for (pattern, who, expected) in cases {
        assert_eq!(p(pattern).matches(who), *expected, "{pattern} vs {who:?}");
    }
}

#[test]
fn path_prefixes_match_whole_segments_and_refuse_paths_that_resolve_elsewhere() {
    let cases = [
        ("/v1/orders", "/v1/orders", true),
        ("/v1/orders/7", "/v1/orders", true),
        ("/v1/orders?id=7", "/v1/orders", true),
        ("/v1/ordersX", "/v1/orders", false),
        ("/v1/orders/", "/v1/orders/", true),
        ("/v1/orders/7", "/v1/", true),
        ("/v1", "/v1/", false),
        ("/v1/orders/../admin", "/v1/orders", false),
        ("/v1/orders/%2e%2e/admin", "/v1/orders", false),
        ("/v1/orders/%2F..", "/v1/orders", false),
        ("/v1/orders/.", "/v1/orders", false),
        ("/v1/orders\\..\\admin", "/v1/orders", false),
        ("*", "/", false),
        ("http://b.test/v1/orders", "/v1/orders", false),
    ];
    for (target, prefix, expected) in cases {
        assert_eq!(
            path_within(target, prefix),
            expected,
            "{target} in {prefix}"
        );
    }
}

#[test]
fn a_rule_needs_its_identity_method_and_path_together() {
    let rules = vec![
        AllowRule {
            identity: IdentityPattern::parse("spiffe://corp/ns/a/*").unwrap(),
            methods: Some(vec!["GET".into(), "HEAD".into()]),
            paths: Some(vec!["/v1/orders".into()]),
        },
        AllowRule {
            identity: IdentityPattern::parse("admin.corp").unwrap(),
            methods: None,
            paths: None,
        },
    ];
    let reader = id(&[], &["spiffe://corp/ns/a/sa/reader"], None);
    let admin = id(&["admin.corp"], &[], None);
    let stranger = id(&["x.corp"], &[], None);
    let cases: &[(&Identity, &str, &str, bool)] = &[
        (&reader, "GET", "/v1/orders/1", true),
        (&reader, "POST", "/v1/orders/1", false),
        (&reader, "GET", "/v1/billing", false),
        (&admin, "DELETE", "/anything", true),
        (&stranger, "GET", "/v1/orders", false),
    ];
    for (who, method, target, expected) in cases {
        assert_eq!(
            allows(Some(&rules), who, method, target),
            *expected,
            "{who:?} {method} {target}"
        );
    }
    assert!(
        allows(None, &stranger, "POST", "/x"),
        "no rules: any admitted identity"
    );
    assert!(
        !allows(Some(&[]), &admin, "GET", "/"),
        "an empty list admits nobody"
    );
}

#[test]
fn identities_come_from_the_certificate_sans_or_its_cn() {
    let cert = |sans: &[&str]| {
        let sans = (!sans.is_empty()).then_some(sans);
        crate::testing::certs::self_signed("the.cn", sans)
    };
    let both = Identity::of(&cert(&["a.corp", "spiffe://corp/sa/a"]));
    assert_eq!(both, id(&["a.corp"], &["spiffe://corp/sa/a"], None));
    assert_eq!(both.describe(), "spiffe://corp/sa/a,a.corp");
    assert_eq!(Identity::of(&cert(&[])), id(&[], &[], Some("the.cn")));
}

#[test]
fn address_blocks_parse_and_contain() {
    let c = |t: &str| Cidr::parse(t).unwrap();
    let ip = |t: &str| t.parse::<std::net::IpAddr>().unwrap();
    assert!(c("10.0.0.0/8").contains(ip("10.200.3.4")));
    assert!(!c("10.0.0.0/8").contains(ip("11.0.0.1")));
    assert!(c("127.0.0.1").contains(ip("127.0.0.1")));
    assert!(!c("127.0.0.1").contains(ip("127.0.0.2")));
    assert!(c("0.0.0.0/0").contains(ip("203.0.113.9")));
    assert!(!c("0.0.0.0/0").contains(ip("::1")), "families never mix");
    assert!(
        c("127.0.0.0/8").contains(ip("::ffff:127.0.0.5")),
        "v4-mapped counts as v4"
    );
    assert!(c("2001:db8::/32").contains(ip("2001:db8:1::7")));
    assert!(c("::/0").contains(ip("::1")));
    for bad in [
        "10.0.0.0/33",
        "10.0.0.1/8",
        "fe80::/129",
        "ten/8",
        "10.0.0.0/x",
        "",
    ] {
        assert!(Cidr::parse(bad).is_err(), "{bad:?} accepted");
    }
}
