//! Property tests (proptest) of the code that reads client input before any database is
//! involved: the SCIM filter parser with its evaluator and SQL translation, the PATCH parser and
//! applier, and the `attributes`/`excludedAttributes` projection. For any input each gives
//! `Ok` or a typed error — a panic fails the property — and each case finishes within
//! [`BOUND`]. The bound catches blow-ups (quadratic or exponential work), not slowness: a case
//! over it is timed again and only fails if it is over it twice, so a busy machine's scheduling
//! pause does not fail the run. Case counts are modest: the suite runs on two shared cores.

use std::time::{Duration, Instant};

use essentry_sync::scim::filter::{matches, parse_filter, parse_patch_path};
use essentry_sync::scim::patch::{
    GROUP_SCHEMA, USER_SCHEMA, apply, parse_patch_request, split_member_ops,
};
use essentry_sync::scim::resource::{GROUP_URN, Projection, USER_URN};
use essentry_sync::store::sql_filter::{Target, translate};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Most time one case may take.
const BOUND: Duration = Duration::from_millis(250);

/// Runs `f`, and again if the first run was over [`BOUND`]; fails when both were.
fn within_bound(what: &str, mut f: impl FnMut()) {
    let started = Instant::now();
    f();
    let first = started.elapsed();
    if first <= BOUND {
        return;
    }
    let started = Instant::now();
    f();
    let second = started.elapsed();
    assert!(
        second <= BOUND,
        "{what}: took {first:?} and then {second:?} (bound {BOUND:?})"
    );
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Pieces of filters and paths, valid and not, including multi-byte characters and NUL.
const FILTER_TOKENS: &[&str] = &[
    "userName",
    "name.givenName",
    "emails",
    "members",
    "value",
    "type",
    "displayName",
    "active",
    "externalId",
    "meta.lastModified",
    "urn:ietf:params:scim:schemas:core:2.0:User:",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
    "$ref",
    " eq ",
    " ne ",
    " co ",
    " sw ",
    " ew ",
    " gt ",
    " ge ",
    " lt ",
    " le ",
    " pr",
    " and ",
    " or ",
    "not ",
    "(",
    ")",
    "[",
    "]",
    ".",
    "\"work\"",
    "\"a@b.c\"",
    "\"",
    "\\",
    "\\u0000",
    "\\u00e9",
    "true",
    "false",
    "null",
    "1",
    "-2.5e3",
    "2026-11-28T12:00:00Z",
    " ",
    "é",
    "日本",
    "😀",
    "\u{0}",
    "\u{301}",
    ":",
    ",",
];

fn token_soup(tokens: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(tokens), 0..max).prop_map(|t| t.concat())
}

/// Random text: arbitrary strings, token soups, and long flat `or`/`and` chains.
fn filter_input() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,60}",
        token_soup(FILTER_TOKENS, 40),
        (1usize..700, any::<bool>()).prop_map(|(n, and)| {
            vec!["userName eq \"u@x.io\""; n].join(if and { " and " } else { " or " })
        }),
        (1usize..60).prop_map(|n| format!("{}a pr{}", "(".repeat(n), ")".repeat(n))),
    ]
}

fn sample_user() -> Value {
    json!({
        "schemas": [USER_URN],
        "id": "7e8f2d0c-1c5a-4c1b-9b1a-9d6f0e6c9a10",
        "userName": "Ann@x.example",
        "name": {"givenName": "Ann", "familyName": "Lee"},
        "emails": [{"value": "ann@x.example", "type": "work", "primary": true}],
        "active": true,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "department": "Ops", "manager": {"value": "m1"}
        },
        "meta": {"resourceType": "User", "created": "2026-11-28T12:00:00Z"}
    })
}

fn sample_group() -> Value {
    json!({
        "schemas": [GROUP_URN],
        "id": "1e8f2d0c-1c5a-4c1b-9b1a-9d6f0e6c9a10",
        "displayName": "Ops",
        "members": [{"value": "u1", "type": "User"}],
    })
}

/// Arbitrary JSON values of bounded size.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(&["True", "False", "work", "a@b.c", "é"][..]).prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(
                        &[
                            "value",
                            "type",
                            "primary",
                            "givenName",
                            "name.familyName",
                            "emails[type eq \"work\"].value",
                            "members",
                            "displayName",
                            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                            "active",
                            "é",
                        ][..]
                    ),
                    inner
                ),
                0..4
            )
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

const PATCH_PATHS: &[&str] = &[
    "name.givenName",
    "name",
    "emails",
    "emails[type eq \"work\"].value",
    "emails[type eq \"work\" and primary eq true]",
    "emails[value co \"x\"].type",
    "members",
    "members[value eq \"u1\"]",
    "members[value eq \"u1\" or value eq \"u2\"]",
    "displayName",
    "active",
    "externalId",
    "userName",
    "id",
    "meta",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
    "urn:x:custom:2.0:User:thing",
    "phoneNumbers[type eq \"work\"].value",
    "a[",
    "]",
    "é.日",
    "name.givenName.extra",
    "",
];

fn patch_path() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        prop::sample::select(PATCH_PATHS).prop_map(|p| Some(p.to_owned())),
        token_soup(FILTER_TOKENS, 12).prop_map(Some),
    ]
}

fn patch_body() -> impl Strategy<Value = Value> {
    let op = (
        prop::sample::select(
            &[
                "add", "Add", "replace", "Replace", "remove", "Remove", "move",
            ][..],
        ),
        patch_path(),
        prop::option::of(json_value()),
    )
        .prop_map(|(op, path, value)| {
            let mut o = Map::new();
            o.insert("op".to_owned(), json!(op));
            if let Some(p) = path {
                o.insert("path".to_owned(), json!(p));
            }
            if let Some(v) = value {
                o.insert("value".to_owned(), v);
            }
            Value::Object(o)
        });
    (prop::collection::vec(op, 0..8), any::<bool>()).prop_map(|(ops, with_schema)| {
        let mut body = json!({"Operations": ops});
        if with_schema {
            body["schemas"] = json!(["urn:ietf:params:scim:api:messages:2.0:PatchOp"]);
        }
        body
    })
}

/// `attributes` lists: paths, URN prefixes cut anywhere and followed by multi-byte
/// characters (a byte index into such a path is not a character boundary), and garbage.
fn attribute_list() -> impl Strategy<Value = String> {
    let core_cut = (
        0..=USER_URN.len(),
        ".{0,4}",
        prop::sample::select(&["é", "日", "😀", ":", "."][..]),
    )
        .prop_map(|(n, tail, mb)| format!("{}{mb}{tail}", &USER_URN[..n]));
    let path = prop_oneof![
        prop::sample::select(
            &[
                "userName",
                "name.givenName",
                "emails.value",
                "members",
                "meta",
                "id",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
                "urn:ietf:params:scim:schemas:core:2.0:User:name.familyName",
                "é",
                "",
            ][..]
        )
        .prop_map(str::to_owned),
        core_cut,
        ".{0,20}",
    ];
    prop::collection::vec(path, 0..6).prop_map(|p| p.join(","))
}

proptest! {
    #![proptest_config(config(300))]

    /// Any filter text parses or is refused; a parsed filter evaluates and translates to SQL
    /// (or is refused as unsupported) for users and groups.
    #[test]
    fn filter_parser_never_panics_and_is_bounded(input in filter_input()) {
        let user = sample_user();
        let group = sample_group();
        within_bound(&format!("filter {:?}", input.chars().take(80).collect::<String>()), || {
            if let Ok(f) = parse_filter(&input) {
                let _ = matches(&f, &user, &|_| false);
                let _ = matches(&f, &group, &|_| true);
                let _ = translate(&f, Target::User, 2);
                let _ = translate(&f, Target::Group, 2);
            }
            let _ = parse_patch_path(&input);
        });
    }

    /// Any PATCH body parses or is refused with a typed error; parsed operations apply to a
    /// user and a group (after splitting the member changes) or are refused.
    #[test]
    fn patch_never_panics_and_is_bounded(body in patch_body()) {
        within_bound(&format!("PATCH {body}"), || {
            let Ok(ops) = parse_patch_request(&body) else { return };
            let Value::Object(mut user) = sample_user() else { return };
            let _ = apply(&mut user, &ops, &USER_SCHEMA);
            if let Ok((rest, _changes)) = split_member_ops(ops.clone()) {
                let Value::Object(mut group) = sample_group() else { return };
                let _ = apply(&mut group, &rest, &GROUP_SCHEMA);
            }
        });
    }

    /// Any `attributes`/`excludedAttributes` pair projects a resource without a panic.
    #[test]
    fn projection_never_panics_and_is_bounded(
        attributes in prop::option::of(attribute_list()),
        excluded in prop::option::of(attribute_list()),
    ) {
        within_bound("projection", || {
            // A list over the cap is a typed error (400 tooMany), never a panic.
            let Ok(p) = Projection::new(attributes.as_deref(), excluded.as_deref()) else {
                return;
            };
            let _ = p.returns("members", GROUP_URN);
            let _ = p.returns("name", USER_URN);
            let _ = p.apply(sample_user(), USER_URN);
            let _ = p.apply(sample_group(), GROUP_URN);
        });
    }
}

/// The input that used to panic: a path whose byte `USER_URN.len()` falls inside a character.
#[test]
fn projection_of_a_multibyte_path_at_the_urn_boundary() {
    let path = format!("{}é", &USER_URN[..USER_URN.len() - 1]);
    let p = Projection::new(Some(&path), None).expect("one path is within the caps");
    let projected = p.apply(sample_user(), USER_URN);
    assert_eq!(
        projected["id"],
        sample_user()["id"],
        "id is always returned"
    );
    assert!(projected.get("userName").is_none(), "{projected}");
    assert!(!p.returns("members", GROUP_URN));
    let excluded = Projection::new(None, Some(&path))
        .expect("one path is within the caps")
        .apply(sample_user(), USER_URN);
    assert_eq!(
        excluded["userName"], "Ann@x.example",
        "an unknown path excludes nothing"
    );
}
