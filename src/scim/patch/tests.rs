//! PATCH tests: Microsoft Entra request bodies, every error kind, and odd input.

use super::apply::coerce_scalar;
use super::*;
use serde_json::json;

const ENT: &str = ENTERPRISE_USER_URN;

fn body(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP_URN], "Operations": ops})
}

fn parse(ops: Value) -> Vec<PatchOp> {
    parse_patch_request(&body(ops)).unwrap()
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(o) => o,
        other => panic!("not an object: {other}"),
    }
}

fn patch_user(resource: Value, ops: Value) -> Result<Value, PatchError> {
    let mut r = obj(resource);
    apply(&mut r, &parse(ops), &USER_SCHEMA)?;
    Ok(Value::Object(r))
}

fn patch_group(resource: Value, ops: Value) -> Result<Value, PatchError> {
    let mut r = obj(resource);
    apply(&mut r, &parse(ops), &GROUP_SCHEMA)?;
    Ok(Value::Object(r))
}

fn user() -> Value {
    json!({
        "schemas": [USER_CORE_URN],
        "id": "2819c223",
        "userName": "bjensen@example.com",
        "active": true,
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "meta": {"resourceType": "User"}
    })
}

fn kind_of(r: Result<Value, PatchError>) -> PatchErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e.kind,
    }
}

// ----- parse_patch_request -----

#[test]
fn parses_entra_tutorial_body() {
    let ops = parse_patch_request(&json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
            {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}
        ]
    }))
    .unwrap();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].op, PatchOpKind::Replace);
    let path = ops[0].path.as_ref().unwrap();
    assert!(path.attr.is("emails"));
    assert_eq!(path.sub_attr.as_deref(), Some("value"));
    assert!(path.value_filter.is_some());
    assert!(
        ops[1]
            .path
            .as_ref()
            .unwrap()
            .attr
            .is_sub("name", "familyName")
    );
    assert_eq!(ops[1].value, Some(json!("updatedFamilyName")));
}

#[test]
fn parse_accepts_any_case() {
    let ops = parse_patch_request(&json!({
        "schemas": ["URN:IETF:PARAMS:SCIM:API:MESSAGES:2.0:PATCHOP"],
        "operations": [
            {"op": "ADD", "path": "title", "value": "x"},
            {"OP": "remove", "Path": "title"},
            {"op": "rEpLaCe", "value": {"title": "y"}}
        ]
    }))
    .unwrap();
    let kinds: Vec<_> = ops.iter().map(|o| o.op).collect();
    assert_eq!(
        kinds,
        [PatchOpKind::Add, PatchOpKind::Remove, PatchOpKind::Replace]
    );
    assert!(ops[2].path.is_none());
}

#[test]
fn parse_null_value_is_kept_absent_is_error() {
    let ops = parse(json!([{"op": "Add", "path": "nickName", "value": null}]));
    assert_eq!(ops[0].value, Some(Value::Null));
    let e = parse_patch_request(&body(json!([{"op": "Add", "path": "nickName"}]))).unwrap_err();
    assert_eq!(e.kind, PatchErrorKind::InvalidValue);
    assert!(e.detail.contains("add requires a 'value'"), "{e}");
    let e = parse_patch_request(&body(json!([{"op": "replace"}]))).unwrap_err();
    assert_eq!(e.kind, PatchErrorKind::InvalidValue);
}

#[test]
fn parse_errors() {
    use PatchErrorKind::*;
    let cases = [
        (json!([1, 2]), InvalidSyntax),
        (
            json!({"Operations": [{"op": "add", "path": "title", "value": "x"}]}),
            InvalidSyntax,
        ),
        (
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "Operations": [{"op": "add", "path": "title", "value": "x"}]}),
            InvalidSyntax,
        ),
        (
            json!({"schemas": PATCH_OP_URN, "Operations": [{"op": "add", "path": "title", "value": "x"}]}),
            InvalidSyntax,
        ),
        (json!({"schemas": [PATCH_OP_URN]}), InvalidSyntax),
        (body(json!([])), InvalidSyntax),
        (body(json!({"op": "add"})), InvalidSyntax),
        (body(json!(["add"])), InvalidSyntax),
        (
            body(json!([{"op": "move", "path": "title"}])),
            InvalidSyntax,
        ),
        (body(json!([{"op": 1, "path": "title"}])), InvalidSyntax),
        (
            body(json!([{"path": "title", "value": "x"}])),
            InvalidSyntax,
        ),
        (
            body(json!([{"op": "add", "path": "emails[type eq work].value", "value": "x"}])),
            InvalidPath,
        ),
        (
            body(json!([{"op": "add", "path": "", "value": "x"}])),
            InvalidPath,
        ),
        (
            body(json!([{"op": "add", "path": 7, "value": "x"}])),
            InvalidPath,
        ),
        (body(json!([{"op": "Remove"}])), NoTarget),
        (body(json!([{"op": "remove", "path": null}])), NoTarget),
        (body(json!([{"op": "add", "path": "title"}])), InvalidValue),
    ];
    for (input, kind) in cases {
        let e = parse_patch_request(&input).unwrap_err();
        assert_eq!(e.kind, kind, "{input}: {e}");
        assert!(!e.detail.is_empty());
    }
    let e = parse_patch_request(&body(
        json!([{"op": "add", "path": "title", "value": "x"}, {"op": "bad"}]),
    ))
    .unwrap_err();
    assert!(e.detail.starts_with("Operations[1]"), "{e}");
}

#[test]
fn parse_operation_limit() {
    let one = json!({"op": "replace", "path": "title", "value": "x"});
    let max = vec![one.clone(); MAX_OPERATIONS];
    assert_eq!(parse(Value::Array(max)).len(), MAX_OPERATIONS);
    let over = vec![one; MAX_OPERATIONS + 1];
    let e = parse_patch_request(&body(Value::Array(over))).unwrap_err();
    assert_eq!(e.kind, PatchErrorKind::InvalidSyntax);
    assert!(e.detail.contains("at most 10000"));
}

// ----- apply: users -----

#[test]
fn entra_tutorial_replace_email_and_family_name() {
    let ops = json!([
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
        {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}
    ]);
    let r = patch_user(user(), ops.clone()).unwrap();
    assert_eq!(
        r["emails"][0],
        json!({"value": "updatedEmail@microsoft.com", "type": "work", "primary": true})
    );
    assert_eq!(r["emails"][1]["value"], "babs@jensen.org");
    assert_eq!(
        r["name"],
        json!({"givenName": "Barbara", "familyName": "updatedFamilyName"})
    );
    // On an empty resource the work email element is created.
    let r = patch_user(json!({"userName": "u"}), ops).unwrap();
    assert_eq!(
        r["emails"],
        json!([{"type": "work", "value": "updatedEmail@microsoft.com"}])
    );
    assert_eq!(r["name"], json!({"familyName": "updatedFamilyName"}));
}

#[test]
fn entra_active_as_string() {
    let r = patch_user(
        user(),
        json!([{"op": "Replace", "path": "active", "value": "False"}]),
    )
    .unwrap();
    assert_eq!(r["active"], json!(false));
    let r = patch_user(
        r,
        json!([{"op": "Replace", "path": "active", "value": "True"}]),
    )
    .unwrap();
    assert_eq!(r["active"], json!(true));
    let r = patch_user(
        r,
        json!([{"op": "replace", "path": "active", "value": "false"}]),
    )
    .unwrap();
    assert_eq!(r["active"], json!(false));
    let r = patch_user(
        r,
        json!([{"op": "replace", "path": "active", "value": true}]),
    )
    .unwrap();
    assert_eq!(r["active"], json!(true));
    for bad in [json!("yes"), json!(1), json!({"a": 1}), json!([true])] {
        let k = kind_of(patch_user(
            user(),
            json!([{"op": "replace", "path": "active", "value": bad}]),
        ));
        assert_eq!(k, PatchErrorKind::InvalidValue);
    }
}

#[test]
fn entra_pathless_replace_mixed_keys() {
    let r = patch_user(
        user(),
        json!([{"op": "replace", "value": {
            "active": false,
            "name.givenName": "Ann",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Sales"
        }}]),
    )
    .unwrap();
    assert_eq!(r["active"], json!(false));
    assert_eq!(
        r["name"],
        json!({"givenName": "Ann", "familyName": "Jensen"})
    );
    assert_eq!(r[ENT], json!({"department": "Sales"}));
    assert_eq!(r["schemas"], json!([USER_CORE_URN, ENT]));
}

#[test]
fn pathless_string_booleans_and_whole_extension() {
    let r = patch_user(
        json!({"userName": "u"}),
        json!([{"op": "Add", "value": {
            "active": "True",
            "displayName": "Ann Example",
            "emails": [{"value": "a@x.com", "type": "work", "primary": "true"}],
            ENT: {"employeeNumber": "42", "manager": {"value": "boss"}}
        }}]),
    )
    .unwrap();
    assert_eq!(r["active"], json!(true));
    assert_eq!(
        r["emails"],
        json!([{"value": "a@x.com", "type": "work", "primary": true}])
    );
    assert_eq!(
        r[ENT],
        json!({"employeeNumber": "42", "manager": {"value": "boss"}})
    );
    // A whole-extension replace merges into what is there.
    let r = patch_user(
        r,
        json!([{"op": "Replace", "value": {ENT: {"department": "R&D"}}}]),
    )
    .unwrap();
    assert_eq!(
        r[ENT],
        json!({"employeeNumber": "42", "department": "R&D", "manager": {"value": "boss"}})
    );
    // Through a path as well.
    let r = patch_user(
        r,
        json!([{"op": "Replace", "path": ENT, "value": {"costCenter": "cc"}}]),
    )
    .unwrap();
    assert_eq!(r[ENT]["costCenter"], "cc");
    let r = patch_user(r, json!([{"op": "Remove", "path": ENT}])).unwrap();
    assert!(r.get(ENT).is_none());
}

#[test]
fn pathless_core_urn_object_applies_core_attributes() {
    let r = patch_user(
        user(),
        json!([{"op": "replace", "value": {USER_CORE_URN: {"title": "Boss"}}}]),
    )
    .unwrap();
    assert_eq!(r["title"], "Boss");
    let k = kind_of(patch_user(
        user(),
        json!([{"op": "remove", "path": USER_CORE_URN}]),
    ));
    assert_eq!(k, PatchErrorKind::InvalidPath);
}

#[test]
fn attribute_names_case_insensitive_and_canonical() {
    let r = patch_user(
        json!({"userName": "u", "name": {"givenName": "Old"}}),
        json!([
            {"op": "replace", "path": "name.givenname", "value": "New"},
            {"op": "replace", "path": "DISPLAYNAME", "value": "D"},
            {"op": "add", "path": "Emails", "value": {"Value": "a@b.c", "TYPE": "work"}},
            {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:Title", "value": "T"},
            {"op": "replace", "path": "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:DEPARTMENT", "value": "Ops"}
        ]),
    )
    .unwrap();
    assert_eq!(r["name"], json!({"givenName": "New"}));
    assert_eq!(r["displayName"], "D");
    assert_eq!(r["emails"], json!([{"value": "a@b.c", "type": "work"}]));
    assert_eq!(r["title"], "T");
    assert_eq!(r[ENT], json!({"department": "Ops"}));
    // A stored key with other casing is replaced by the canonical one.
    let r = patch_user(
        json!({"username": "old"}),
        json!([{"op": "replace", "path": "userName", "value": "new"}]),
    )
    .unwrap();
    assert_eq!(r, json!({"userName": "new"}));
}

#[test]
fn unknown_attributes_and_schemas_are_invalid_path() {
    use PatchErrorKind::InvalidPath;
    for path in [
        "favouriteColour",
        "schemas",
        "urn:ietf:params:scim:schemas:core:2.0:User:schemas",
        "urn:ietf:params:scim:schemas:core:2.0:User:nope",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:shoeSize",
        "name.nickname",
        "userName.value",
        "emails[type eq \"work\"].colour",
        "foo:bar",
    ] {
        let k = kind_of(patch_user(
            user(),
            json!([{"op": "replace", "path": path, "value": "x"}]),
        ));
        assert_eq!(k, InvalidPath, "{path}");
    }
    let k = kind_of(patch_user(
        user(),
        json!([{"op": "add", "value": {"schemas": ["x"], "bogus": 1}}]),
    ));
    assert_eq!(k, InvalidPath);
    let k = kind_of(patch_user(
        user(),
        json!([{"op": "add", "value": {"a b": 1}}]),
    ));
    assert_eq!(k, InvalidPath);
}

#[test]
fn custom_extension_stored_as_sent() {
    let custom = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User";
    let r = patch_user(
        user(),
        json!([
            {"op": "Add", "path": format!("{custom}:costCode"), "value": "C-1"},
            {"op": "Add", "path": format!("{custom}:badge.number"), "value": 7}
        ]),
    )
    .unwrap();
    assert_eq!(
        r[custom],
        json!({"costCode": "C-1", "badge": {"number": 7}})
    );
    assert!(r["schemas"].as_array().unwrap().contains(&json!(custom)));
    // Whole custom extension objects, path-less and with a path.
    let other = "urn:example:acme:2.0:User";
    let r = patch_user(
        r,
        json!([{"op": "replace", "value": {other: {"level": 3}}}]),
    )
    .unwrap();
    assert_eq!(r[other], json!({"level": 3}));
    let r = patch_user(
        r,
        json!([{"op": "replace", "path": other, "value": {"tier": "gold"}}]),
    )
    .unwrap();
    assert_eq!(r[other], json!({"level": 3, "tier": "gold"}));
    let r = patch_user(r, json!([{"op": "remove", "path": format!("{custom}:costCode")}, {"op": "remove", "path": format!("{custom}:badge")}])).unwrap();
    assert!(r.get(custom).is_none());
    assert!(!r["schemas"].as_array().unwrap().contains(&json!(custom)));
    let r = patch_user(r, json!([{"op": "remove", "path": other}])).unwrap();
    assert!(r.get(other).is_none());
}

#[test]
fn read_only_attributes_are_mutability_errors() {
    for path in [
        "id",
        "meta",
        "meta.lastModified",
        "groups",
        "groups[value eq \"g\"]",
    ] {
        for op in ["add", "replace", "remove"] {
            let k = kind_of(patch_user(
                user(),
                json!([{"op": op, "path": path, "value": "x"}]),
            ));
            assert_eq!(k, PatchErrorKind::Mutability, "{op} {path}");
        }
    }
    // Echoing an unchanged read-only value in a path-less op is tolerated.
    let r = patch_user(
        user(),
        json!([{"op": "replace", "value": {"id": "2819c223", "title": "t"}}]),
    )
    .unwrap();
    assert_eq!(r["title"], "t");
    let k = kind_of(patch_user(
        user(),
        json!([{"op": "replace", "value": {"id": "other"}}]),
    ));
    assert_eq!(k, PatchErrorKind::Mutability);
}

#[test]
fn immutable_attributes() {
    static SCHEMA: ResourceSchema = ResourceSchema {
        core_urn: "urn:x:Thing",
        extension_urns: &[],
        attributes: &[AttrDef::new("serial", AttrKind::String).mutability(Mutability::Immutable)],
        extension_attributes: &[],
    };
    let mut r = Map::new();
    let ops = parse(json!([{"op": "add", "path": "serial", "value": "s1"}]));
    apply(&mut r, &ops, &SCHEMA).unwrap();
    assert_eq!(r["serial"], "s1");
    apply(&mut r, &ops, &SCHEMA).unwrap();
    let change = parse(json!([{"op": "replace", "path": "serial", "value": "s2"}]));
    assert_eq!(
        apply(&mut r, &change, &SCHEMA).unwrap_err().kind,
        PatchErrorKind::Mutability
    );
}

#[test]
fn removing_required_attribute_is_invalid_value() {
    let e = patch_user(user(), json!([{"op": "remove", "path": "userName"}])).unwrap_err();
    assert_eq!(e.kind, PatchErrorKind::InvalidValue);
    assert!(e.detail.contains("required"), "{e}");
    let k = kind_of(patch_user(
        user(),
        json!([{"op": "replace", "path": "userName", "value": null}]),
    ));
    assert_eq!(k, PatchErrorKind::InvalidValue);
    let k = kind_of(patch_group(
        json!({"displayName": "g"}),
        json!([{"op": "remove", "path": "displayName"}]),
    ));
    assert_eq!(k, PatchErrorKind::InvalidValue);
}

#[test]
fn null_value_unassigns() {
    let r = patch_user(
        json!({"userName": "u", "nickName": "Babs", "title": "t", "name": {"givenName": "g", "familyName": "f"}}),
        json!([
            {"op": "Add", "path": "nickName", "value": null},
            {"op": "replace", "value": {"title": null}},
            {"op": "replace", "path": "name.givenName", "value": null},
            {"op": "add", "path": "name", "value": {"familyName": null}}
        ]),
    )
    .unwrap();
    assert_eq!(r, json!({"userName": "u"}));
    // Unassigning something absent is a no-op.
    let r = patch_user(json!({"userName": "u"}), json!([{"op": "remove", "path": "nickName"}, {"op": "replace", "path": "emails", "value": null}])).unwrap();
    assert_eq!(r, json!({"userName": "u"}));
}

#[test]
fn add_to_multi_valued_appends() {
    let r = patch_user(
        user(),
        json!([
            {"op": "add", "path": "emails", "value": {"value": "third@x.com", "type": "other"}},
            {"op": "add", "path": "emails", "value": [{"value": "fourth@x.com"}, {"value": "babs@jensen.org", "type": "home"}]},
            {"op": "add", "path": "phoneNumbers", "value": [{"value": "555-1234", "type": "work"}]}
        ]),
    )
    .unwrap();
    let emails: Vec<&str> = r["emails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    // The exact duplicate is not added twice.
    assert_eq!(
        emails,
        [
            "bjensen@example.com",
            "babs@jensen.org",
            "third@x.com",
            "fourth@x.com"
        ]
    );
    assert_eq!(
        r["phoneNumbers"],
        json!([{"value": "555-1234", "type": "work"}])
    );
}

#[test]
fn replace_multi_valued_replaces_all() {
    let r = patch_user(user(), json!([{"op": "replace", "path": "emails", "value": [{"value": "only@x.com", "type": "work"}]}])).unwrap();
    assert_eq!(
        r["emails"],
        json!([{"value": "only@x.com", "type": "work"}])
    );
    let r = patch_user(
        user(),
        json!([{"op": "replace", "path": "emails", "value": []}]),
    )
    .unwrap();
    assert!(r.get("emails").is_none());
}

#[test]
fn primary_is_unique() {
    let r = patch_user(
        user(),
        json!([{"op": "add", "path": "emails", "value": {"value": "new@x.com", "primary": true}}]),
    )
    .unwrap();
    let primaries: Vec<&Value> = r["emails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["primary"])
        .collect();
    assert_eq!(primaries, [&json!(false), &Value::Null, &json!(true)]);
    let r = patch_user(
        user(),
        json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": "True"}]),
    )
    .unwrap();
    assert_eq!(r["emails"][0]["primary"], json!(false));
    assert_eq!(r["emails"][1]["primary"], json!(true));
    let r = patch_user(
        json!({"userName": "u"}),
        json!([{"op": "replace", "path": "emails", "value": [{"value": "a", "primary": true}, {"value": "b", "primary": true}]}]),
    )
    .unwrap();
    assert_eq!(
        r["emails"],
        json!([{"value": "a", "primary": false}, {"value": "b", "primary": true}])
    );
}

#[test]
fn filtered_replace_and_add() {
    // Replace the whole matching element.
    let r = patch_user(user(), json!([{"op": "replace", "path": "emails[type eq \"home\"]", "value": {"value": "h@x.com", "type": "home"}}])).unwrap();
    assert_eq!(r["emails"][1], json!({"value": "h@x.com", "type": "home"}));
    // Add merges into the matching element.
    let r = patch_user(
        user(),
        json!([{"op": "add", "path": "emails[type eq \"home\"]", "value": {"display": "Home"}}]),
    )
    .unwrap();
    assert_eq!(
        r["emails"][1],
        json!({"value": "babs@jensen.org", "type": "home", "display": "Home"})
    );
    // Filters are case-insensitive for caseExact=false attributes.
    let r = patch_user(
        user(),
        json!([{"op": "replace", "path": "emails[TYPE EQ \"HOME\"].value", "value": "z@x.com"}]),
    )
    .unwrap();
    assert_eq!(r["emails"][1]["value"], "z@x.com");
    // Every match is updated.
    let r = patch_user(
        user(),
        json!([{"op": "replace", "path": "emails[value co \"@\"].display", "value": "d"}]),
    )
    .unwrap();
    assert!(
        r["emails"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["display"] == "d")
    );
}

#[test]
fn filtered_add_creates_element_from_equalities() {
    let r = patch_user(
        json!({"userName": "u"}),
        json!([
            {"op": "Add", "path": "addresses[type eq \"work\"].streetAddress", "value": "1 Main St"},
            {"op": "Add", "path": "addresses[type eq \"work\"].locality", "value": "Springfield"},
            {"op": "Replace", "path": "phoneNumbers[type eq \"mobile\" and primary eq \"True\"].value", "value": "555"},
            {"op": "Add", "path": "emails[type eq \"work\"]", "value": {"value": "w@x.com"}}
        ]),
    )
    .unwrap();
    assert_eq!(
        r["addresses"],
        json!([{"type": "work", "streetAddress": "1 Main St", "locality": "Springfield"}])
    );
    assert_eq!(
        r["phoneNumbers"],
        json!([{"type": "mobile", "primary": true, "value": "555"}])
    );
    assert_eq!(r["emails"], json!([{"type": "work", "value": "w@x.com"}]));
}

#[test]
fn filtered_no_match_non_equality_is_no_target() {
    for path in [
        "emails[value co \"nomatch\"].value",
        "emails[type eq \"a\" or type eq \"b\"].value",
        "emails[not (type eq \"work\") and type eq \"home\" and value eq \"zzz\"].value",
        "emails[type.x eq \"a\"].value",
    ] {
        let k = kind_of(patch_user(
            user(),
            json!([{"op": "replace", "path": path, "value": "v"}]),
        ));
        assert_eq!(k, PatchErrorKind::NoTarget, "{path}");
    }
}

#[test]
fn filtered_remove() {
    let r = patch_user(
        user(),
        json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]),
    )
    .unwrap();
    assert_eq!(
        r["emails"],
        json!([{"value": "bjensen@example.com", "type": "work", "primary": true}])
    );
    let r = patch_user(
        user(),
        json!([{"op": "remove", "path": "emails[type eq \"work\"].primary"}]),
    )
    .unwrap();
    assert_eq!(
        r["emails"][0],
        json!({"value": "bjensen@example.com", "type": "work"})
    );
    // No match: no-op.
    let r = patch_user(
        user(),
        json!([{"op": "remove", "path": "emails[type eq \"other\"]"}]),
    )
    .unwrap();
    assert_eq!(r, user());
    let r = patch_user(
        user(),
        json!([{"op": "remove", "path": "phoneNumbers[type eq \"x\"]"}]),
    )
    .unwrap();
    assert_eq!(r, user());
    // Removing every element removes the attribute.
    let r = patch_user(
        user(),
        json!([{"op": "remove", "path": "emails[value pr]"}]),
    )
    .unwrap();
    assert!(r.get("emails").is_none());
    // Remove the sub-attribute everywhere.
    let r = patch_user(user(), json!([{"op": "remove", "path": "emails.type"}])).unwrap();
    assert_eq!(
        r["emails"],
        json!([{"value": "bjensen@example.com", "primary": true}, {"value": "babs@jensen.org"}])
    );
}

#[test]
fn filter_on_single_valued_is_invalid_path() {
    for op in ["replace", "add", "remove"] {
        let k = kind_of(patch_user(
            user(),
            json!([{"op": op, "path": "name[givenName eq \"Barbara\"].familyName", "value": "x"}]),
        ));
        assert_eq!(k, PatchErrorKind::InvalidPath);
        let k = kind_of(patch_user(
            user(),
            json!([{"op": op, "path": "title[value eq \"x\"]", "value": "x"}]),
        ));
        assert_eq!(k, PatchErrorKind::InvalidPath);
    }
}

#[test]
fn sub_attribute_of_multi_valued_without_filter() {
    let r = patch_user(
        user(),
        json!([{"op": "replace", "path": "emails.display", "value": "d"}]),
    )
    .unwrap();
    assert!(
        r["emails"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["display"] == "d")
    );
    let r = patch_user(
        json!({"userName": "u"}),
        json!([{"op": "add", "path": "emails.value", "value": "a@b.c"}]),
    )
    .unwrap();
    assert_eq!(r["emails"], json!([{"value": "a@b.c"}]));
}

#[test]
fn manager_variants() {
    let m = format!("{ENT}:manager");
    // URN path with a bare id.
    let r = patch_user(
        user(),
        json!([{"op": "Replace", "path": m, "value": "boss-1"}]),
    )
    .unwrap();
    assert_eq!(r[ENT], json!({"manager": {"value": "boss-1"}}));
    // Unqualified path with the one-element array form.
    let r = patch_user(
        user(),
        json!([{"op": "Add", "path": "manager", "value": [{"$ref": null, "value": "boss-2"}]}]),
    )
    .unwrap();
    assert_eq!(r[ENT], json!({"manager": {"value": "boss-2"}}));
    // Object form, then sub-attribute path, then removal.
    let r = patch_user(
        r,
        json!([{"op": "Add", "path": m, "value": {"value": "boss-3", "displayName": "Boss"}}]),
    )
    .unwrap();
    assert_eq!(
        r[ENT]["manager"],
        json!({"value": "boss-3", "displayName": "Boss"})
    );
    let r = patch_user(
        r,
        json!([{"op": "Replace", "path": format!("{m}.value"), "value": "boss-4"}]),
    )
    .unwrap();
    assert_eq!(r[ENT]["manager"]["value"], "boss-4");
    let r = patch_user(r, json!([{"op": "Remove", "path": m}])).unwrap();
    assert!(r.get(ENT).is_none());
    assert_eq!(r["schemas"], json!([USER_CORE_URN]));
    let k = kind_of(patch_user(
        user(),
        json!([{"op": "add", "path": m, "value": [{"value": "a"}, {"value": "b"}]}]),
    ));
    assert_eq!(k, PatchErrorKind::InvalidValue);
}

#[test]
fn value_type_errors() {
    use PatchErrorKind::InvalidValue;
    let cases = [
        json!({"op": "replace", "path": "userName", "value": {"x": 1}}),
        json!({"op": "replace", "path": "title", "value": [1]}),
        json!({"op": "replace", "path": "name", "value": [1, 2]}),
        json!({"op": "replace", "path": "name", "value": "plain"}),
        json!({"op": "add", "path": "emails", "value": [{"value": "a", "primary": "maybe"}]}),
        json!({"op": "add", "path": "emails", "value": [[1]]}),
        json!({"op": "replace", "value": "not an object"}),
        json!({"op": "replace", "value": [{"title": "x"}]}),
        json!({"op": "replace", "path": ENT, "value": "x"}),
        json!({"op": "replace", "path": "emails[type eq \"work\"]", "value": "x@y"}),
    ];
    for op in cases {
        let e = patch_user(user(), Value::Array(vec![op.clone()])).unwrap_err();
        assert_eq!(e.kind, InvalidValue, "{op}: {e}");
    }
    // Numbers and booleans are accepted as strings for string attributes.
    let r = patch_user(
        user(),
        json!([{"op": "replace", "value": {"title": 7, "nickName": true}}]),
    )
    .unwrap();
    assert_eq!(
        (r["title"].as_str(), r["nickName"].as_str()),
        (Some("7"), Some("true"))
    );
}

#[test]
fn integer_coercion() {
    assert_eq!(
        coerce_scalar(AttrKind::Integer, &json!(5), "n").unwrap(),
        json!(5)
    );
    assert_eq!(
        coerce_scalar(AttrKind::Integer, &json!(" 12 "), "n").unwrap(),
        json!(12)
    );
    assert!(coerce_scalar(AttrKind::Integer, &json!(1.5), "n").is_err());
    assert!(coerce_scalar(AttrKind::Integer, &json!("x"), "n").is_err());
    assert!(coerce_scalar(AttrKind::Complex, &json!("x"), "n").is_err());
}

#[test]
fn error_detail_names_the_operation() {
    let e = patch_user(user(), json!([{"op": "replace", "path": "title", "value": "ok"}, {"op": "replace", "path": "nope", "value": 1}])).unwrap_err();
    assert_eq!(e.kind, PatchErrorKind::InvalidPath);
    assert!(
        e.detail
            .starts_with("Operations[1]: unknown attribute 'nope'"),
        "{e}"
    );
    assert_eq!(e.to_string(), e.detail);
    assert_eq!(e.kind.scim_type(), "invalidPath");
}

#[test]
fn hand_built_ops_are_checked_too() {
    let mut r = obj(user());
    let remove_all = [PatchOp {
        op: PatchOpKind::Remove,
        path: None,
        value: None,
    }];
    assert_eq!(
        apply(&mut r, &remove_all, &USER_SCHEMA).unwrap_err().kind,
        PatchErrorKind::NoTarget
    );
    let add_nothing = [PatchOp {
        op: PatchOpKind::Add,
        path: Some(parse_patch_path("title").unwrap()),
        value: None,
    }];
    assert_eq!(
        apply(&mut r, &add_nothing, &USER_SCHEMA).unwrap_err().kind,
        PatchErrorKind::InvalidValue
    );
}

// ----- groups -----

fn group() -> Value {
    json!({
        "schemas": [GROUP_CORE_URN],
        "id": "g1",
        "displayName": "Group One",
        "members": [{"value": "id1"}, {"value": "id2"}, {"value": "id3"}]
    })
}

#[test]
fn group_display_name_replace() {
    let r = patch_group(
        group(),
        json!([{"op": "Replace", "path": "displayName", "value": "new"}]),
    )
    .unwrap();
    assert_eq!(r["displayName"], "new");
    let k = kind_of(patch_group(
        group(),
        json!([{"op": "Replace", "path": "userName", "value": "x"}]),
    ));
    assert_eq!(k, PatchErrorKind::InvalidPath);
}

#[test]
fn group_members_applied_generically() {
    let r = patch_group(
        group(),
        json!([{"op": "Add", "path": "members", "value": [{"value": "id4"}, {"value": "id5"}]}]),
    )
    .unwrap();
    assert_eq!(r["members"].as_array().unwrap().len(), 5);
    let r = patch_group(
        r,
        json!([{"op": "Remove", "path": "members[value eq \"id1\"]"}]),
    )
    .unwrap();
    assert_eq!(r["members"].as_array().unwrap().len(), 4);
    let r = patch_group(
        r,
        json!([{"op": "Remove", "path": "members", "value": [{"value": "id2"}, {"value": "ID3"}]}]),
    )
    .unwrap();
    assert_eq!(r["members"], json!([{"value": "id4"}, {"value": "id5"}]));
    let r = patch_group(r, json!([{"op": "Remove", "path": "members"}])).unwrap();
    assert!(r.get("members").is_none());
}

#[test]
fn split_entra_member_ops() {
    let ops = parse(json!([
        {"op": "Replace", "path": "displayName", "value": "new"},
        {"op": "Add", "path": "members", "value": [{"value": "id1"}, {"value": "id2"}]},
        {"op": "Remove", "path": "members[value eq \"id1\"]"},
        {"op": "Remove", "path": "members", "value": [{"value": "id2"}, {"value": "id3"}]},
        {"op": "Remove", "path": "members"},
        {"op": "Replace", "path": "members", "value": [{"value": "id9"}]},
        {"op": "Add", "path": "urn:ietf:params:scim:schemas:core:2.0:Group:members", "value": {"value": "id7"}},
        {"op": "Remove", "path": "members[value eq \"a\" or value eq \"b\"]"},
        {"op": "add", "value": {"displayName": "x", "members": [{"value": "p1"}]}},
        {"op": "replace", "value": {"members": [{"value": "p2"}]}},
        {"op": "replace", "value": {"urn:ietf:params:scim:schemas:core:2.0:Group:members": null}},
        {"op": "replace", "path": "members", "value": null}
    ]));
    let (rest, changes) = split_member_ops(ops).unwrap();
    assert_eq!(
        changes,
        [
            MemberChange::Add(vec!["id1".into(), "id2".into()]),
            MemberChange::Remove(vec!["id1".into()]),
            MemberChange::Remove(vec!["id2".into(), "id3".into()]),
            MemberChange::RemoveAll,
            MemberChange::ReplaceAll(vec!["id9".into()]),
            MemberChange::Add(vec!["id7".into()]),
            MemberChange::Remove(vec!["a".into(), "b".into()]),
            MemberChange::Add(vec!["p1".into()]),
            MemberChange::ReplaceAll(vec!["p2".into()]),
            MemberChange::RemoveAll,
            MemberChange::RemoveAll,
        ]
    );
    assert_eq!(rest.len(), 2);
    assert!(rest[0].path.as_ref().unwrap().attr.is("displayName"));
    assert_eq!(rest[1].value, Some(json!({"displayName": "x"})));
    // The rest still applies to the group.
    let mut g = obj(group());
    apply(&mut g, &rest, &GROUP_SCHEMA).unwrap();
    assert_eq!(g["displayName"], "x");
}

#[test]
fn split_many_members() {
    let members: Vec<Value> = (0..5000)
        .map(|i| json!({"value": format!("id{i}")}))
        .collect();
    let ops = parse(json!([{"op": "Add", "path": "members", "value": members}]));
    let (rest, changes) = split_member_ops(ops).unwrap();
    assert!(rest.is_empty());
    match &changes[..] {
        [MemberChange::Add(ids)] => assert_eq!(ids.len(), 5000),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn split_member_errors() {
    use PatchErrorKind::*;
    let cases = [
        (
            json!({"op": "Add", "path": "members", "value": [{"display": "no id"}]}),
            InvalidValue,
        ),
        (
            json!({"op": "Add", "path": "members", "value": [{"value": 5}]}),
            InvalidValue,
        ),
        (
            json!({"op": "Add", "path": "members", "value": [{"value": ""}]}),
            InvalidValue,
        ),
        (
            json!({"op": "Add", "path": "members", "value": [true]}),
            InvalidValue,
        ),
        (
            json!({"op": "Remove", "path": "members[type eq \"User\"]"}),
            InvalidPath,
        ),
        (
            json!({"op": "Remove", "path": "members[value ne \"x\"]"}),
            InvalidPath,
        ),
        (
            json!({"op": "Replace", "path": "members[value eq \"x\"]", "value": {"value": "y"}}),
            InvalidPath,
        ),
        (
            json!({"op": "Replace", "path": "members.value", "value": "y"}),
            InvalidPath,
        ),
        (
            json!({"op": "Remove", "path": "members[value eq \"x\"].display"}),
            InvalidPath,
        ),
        (
            json!({"op": "replace", "value": {"members": 5}}),
            InvalidValue,
        ),
    ];
    for (op, kind) in cases {
        let e = split_member_ops(parse(Value::Array(vec![op.clone()]))).unwrap_err();
        assert_eq!(e.kind, kind, "{op}: {e}");
        assert!(e.detail.starts_with("Operations[0]"));
    }
    let hand_built = vec![PatchOp {
        op: PatchOpKind::Add,
        path: Some(parse_patch_path("members").unwrap()),
        value: None,
    }];
    assert_eq!(split_member_ops(hand_built).unwrap_err().kind, InvalidValue);
    // Non-member ops pass through untouched.
    let ops = parse(json!([{"op": "remove", "path": "externalId"}, {"op": "add", "value": "odd"}]));
    let (rest, changes) = split_member_ops(ops.clone()).unwrap();
    assert_eq!(rest, ops);
    assert!(changes.is_empty());
}

// ----- robustness -----

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 2 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.pick(&["True", "false", "work", "", "x@y.com", "id1"])),
        3 => json!(rng.below(100)),
        4 => json!(-1.5),
        5 => json!(rng.pick(&["yes", "home"])),
        6 => Value::Array(
            (0..rng.below(3))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let keys = [
                "value",
                "type",
                "primary",
                "givenName",
                "display",
                "department",
                "members",
                "active",
                "name.givenName",
                ENT,
                "$ref",
                "x",
            ];
            Value::Object(
                (0..rng.below(4))
                    .map(|_| (rng.pick(&keys).to_string(), random_value(rng, depth + 1)))
                    .collect(),
            )
        }
    }
}

#[test]
fn apply_never_panics_on_odd_input() {
    let paths = [
        "userName",
        "name",
        "name.givenName",
        "emails",
        "emails.value",
        "emails[type eq \"work\"]",
        "emails[type eq \"work\"].value",
        "emails[value pr].primary",
        "emails[not (type eq \"x\")]",
        "active",
        "phoneNumbers[type eq \"mobile\" and primary eq true].value",
        "addresses[type eq \"work\"].streetAddress",
        "manager",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        "urn:ietf:params:scim:schemas:extension:Custom:2.0:User",
        "urn:ietf:params:scim:schemas:extension:Custom:2.0:User:a.b",
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "members",
        "members[value eq \"id1\"]",
        "displayName",
        "id",
        "meta.created",
        "schemas",
        "groups",
        "x509Certificates[value eq 5]",
        "roles[primary eq \"True\"]",
    ];
    let kinds = [PatchOpKind::Add, PatchOpKind::Remove, PatchOpKind::Replace];
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for round in 0..3000 {
        let schema = if round % 3 == 0 {
            &GROUP_SCHEMA
        } else {
            &USER_SCHEMA
        };
        let mut resource = if round % 3 == 0 {
            obj(group())
        } else {
            obj(user())
        };
        // Sometimes start from a corrupted stored resource.
        if rng.below(4) == 0 {
            let key = rng
                .pick(&["emails", "name", "members", ENT, "active", "schemas"])
                .to_string();
            resource.insert(key, random_value(&mut rng, 0));
        }
        let ops: Vec<PatchOp> = (0..1 + rng.below(4))
            .map(|_| {
                let path = if rng.below(5) == 0 {
                    None
                } else {
                    parse_patch_path(paths[rng.below(paths.len())]).ok()
                };
                let value = if rng.below(6) == 0 {
                    None
                } else {
                    Some(random_value(&mut rng, 0))
                };
                PatchOp {
                    op: *rng.pick(&kinds),
                    path,
                    value,
                }
            })
            .collect();
        let _ = apply(&mut resource, &ops, schema);
        let _ = split_member_ops(ops);
    }
}

#[test]
fn parse_request_never_panics_on_odd_bodies() {
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
    for _ in 0..3000 {
        let mut ops = Vec::new();
        for _ in 0..rng.below(4) {
            let mut op = Map::new();
            if rng.below(5) != 0 {
                op.insert(
                    "op".into(),
                    json!(rng.pick(&["add", "Remove", "REPLACE", "x"])),
                );
            }
            if rng.below(3) != 0 {
                op.insert(
                    "path".into(),
                    json!(rng.pick(&[
                        "title",
                        "emails[",
                        "a[b eq 1].c",
                        "urn:x:y:z",
                        "",
                        "name.givenName"
                    ])),
                );
            }
            if rng.below(3) != 0 {
                op.insert("value".into(), random_value(&mut rng, 0));
            }
            ops.push(Value::Object(op));
        }
        let body = match rng.below(4) {
            0 => random_value(&mut rng, 0),
            _ => json!({"schemas": [PATCH_OP_URN], "Operations": ops}),
        };
        if let Ok(parsed) = parse_patch_request(&body) {
            let mut r = obj(user());
            let _ = apply(&mut r, &parsed, &USER_SCHEMA);
        }
    }
}
