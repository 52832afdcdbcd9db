//! The attribute schemas of SCIM Users (RFC 7643 §4.1, with the §4.3 enterprise extension)
//! and Groups (§4.2): names, types, multiplicity, sub-attributes, mutability and case rules.
//! PATCH enforces them and `/Schemas` publishes them, so what we publish is what we enforce.

// ---------------------------------------------------------------------------
// Schemas

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrKind {
    String,
    Boolean,
    Complex,
    Reference,
    DateTime,
    Integer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

/// One attribute of a resource schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttrDef {
    pub name: &'static str,
    pub multi_valued: bool,
    pub kind: AttrKind,
    pub sub_attributes: &'static [(&'static str, AttrKind)],
    pub mutability: Mutability,
    pub case_exact: bool,
    /// Required attributes cannot be removed.
    pub required: bool,
}

impl AttrDef {
    pub const fn new(name: &'static str, kind: AttrKind) -> Self {
        AttrDef {
            name,
            multi_valued: false,
            kind,
            sub_attributes: &[],
            mutability: Mutability::ReadWrite,
            case_exact: false,
            required: false,
        }
    }
    pub const fn complex(name: &'static str, subs: &'static [(&'static str, AttrKind)]) -> Self {
        let mut def = AttrDef::new(name, AttrKind::Complex);
        def.sub_attributes = subs;
        def
    }
    pub const fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    pub const fn mutability(mut self, mutability: Mutability) -> Self {
        self.mutability = mutability;
        self
    }
    pub const fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub(crate) fn sub(&self, name: &str) -> Option<(&'static str, AttrKind)> {
        self.sub_attributes
            .iter()
            .copied()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

/// Describes the resource type being patched.
#[derive(Debug)]
pub struct ResourceSchema {
    pub core_urn: &'static str,
    pub extension_urns: &'static [&'static str],
    pub attributes: &'static [AttrDef],
    /// Attribute definitions of the extensions in `extension_urns`.
    pub extension_attributes: &'static [(&'static str, &'static [AttrDef])],
}

impl ResourceSchema {
    pub(crate) fn known_extension(&self, urn: &str) -> Option<&'static str> {
        self.extension_urns
            .iter()
            .copied()
            .find(|u| u.eq_ignore_ascii_case(urn))
    }
    pub(crate) fn extension_defs(&self, urn: &str) -> &'static [AttrDef] {
        self.extension_attributes
            .iter()
            .find(|(u, _)| u.eq_ignore_ascii_case(urn))
            .map_or(&[], |(_, defs)| defs)
    }
    pub(crate) fn is_known_schema(&self, urn: &str) -> bool {
        urn.eq_ignore_ascii_case(self.core_urn) || self.known_extension(urn).is_some()
    }
}

pub(crate) fn find_def(defs: &'static [AttrDef], name: &str) -> Option<&'static AttrDef> {
    defs.iter().find(|d| d.name.eq_ignore_ascii_case(name))
}

use AttrKind as K;

use super::patch::{ENTERPRISE_USER_URN, GROUP_CORE_URN, USER_CORE_URN};

const MULTI_SUBS: &[(&str, AttrKind)] = &[
    ("value", K::String),
    ("display", K::String),
    ("type", K::String),
    ("primary", K::Boolean),
];
const PHOTO_SUBS: &[(&str, AttrKind)] = &[
    ("value", K::Reference),
    ("display", K::String),
    ("type", K::String),
    ("primary", K::Boolean),
];
const NAME_SUBS: &[(&str, AttrKind)] = &[
    ("formatted", K::String),
    ("familyName", K::String),
    ("givenName", K::String),
    ("middleName", K::String),
    ("honorificPrefix", K::String),
    ("honorificSuffix", K::String),
];
const ADDRESS_SUBS: &[(&str, AttrKind)] = &[
    ("formatted", K::String),
    ("streetAddress", K::String),
    ("locality", K::String),
    ("region", K::String),
    ("postalCode", K::String),
    ("country", K::String),
    ("type", K::String),
    ("primary", K::Boolean),
];
const REF_SUBS: &[(&str, AttrKind)] = &[
    ("value", K::String),
    ("$ref", K::Reference),
    ("display", K::String),
    ("type", K::String),
];
/// RFC 7643 §8.7.1: a group member is referenced by `value`, `$ref` and `type`.
const MEMBER_SUBS: &[(&str, AttrKind)] = &[
    ("value", K::String),
    ("$ref", K::Reference),
    ("type", K::String),
    // RFC 7643 §4.2: a human-readable name of the member; the server fills it in (readOnly).
    ("display", K::String),
];
const META_SUBS: &[(&str, AttrKind)] = &[
    ("resourceType", K::String),
    ("created", K::DateTime),
    ("lastModified", K::DateTime),
    ("location", K::Reference),
    ("version", K::String),
];
const MANAGER_SUBS: &[(&str, AttrKind)] = &[
    ("value", K::String),
    ("$ref", K::Reference),
    ("displayName", K::String),
];

const USER_ATTRIBUTES: &[AttrDef] = &[
    AttrDef::new("id", K::String)
        .mutability(Mutability::ReadOnly)
        .case_exact(),
    AttrDef::new("externalId", K::String).case_exact(),
    AttrDef::complex("meta", META_SUBS).mutability(Mutability::ReadOnly),
    AttrDef::new("userName", K::String).required(),
    AttrDef::complex("name", NAME_SUBS),
    AttrDef::new("displayName", K::String),
    AttrDef::new("nickName", K::String),
    AttrDef::new("profileUrl", K::Reference),
    AttrDef::new("title", K::String),
    AttrDef::new("userType", K::String),
    AttrDef::new("preferredLanguage", K::String),
    AttrDef::new("locale", K::String),
    AttrDef::new("timezone", K::String),
    AttrDef::new("active", K::Boolean),
    AttrDef::new("password", K::String)
        .mutability(Mutability::WriteOnly)
        .case_exact(),
    AttrDef::complex("emails", MULTI_SUBS).multi(),
    AttrDef::complex("phoneNumbers", MULTI_SUBS).multi(),
    AttrDef::complex("ims", MULTI_SUBS).multi(),
    AttrDef::complex("photos", PHOTO_SUBS).multi(),
    AttrDef::complex("addresses", ADDRESS_SUBS).multi(),
    AttrDef::complex("groups", REF_SUBS)
        .multi()
        .mutability(Mutability::ReadOnly),
    AttrDef::complex("entitlements", MULTI_SUBS).multi(),
    AttrDef::complex("roles", MULTI_SUBS).multi(),
    AttrDef::complex("x509Certificates", MULTI_SUBS).multi(),
];

const ENTERPRISE_ATTRIBUTES: &[AttrDef] = &[
    AttrDef::new("employeeNumber", K::String),
    AttrDef::new("costCenter", K::String),
    AttrDef::new("organization", K::String),
    AttrDef::new("division", K::String),
    AttrDef::new("department", K::String),
    AttrDef::complex("manager", MANAGER_SUBS),
];

const GROUP_ATTRIBUTES: &[AttrDef] = &[
    AttrDef::new("id", K::String)
        .mutability(Mutability::ReadOnly)
        .case_exact(),
    AttrDef::new("externalId", K::String).case_exact(),
    AttrDef::complex("meta", META_SUBS).mutability(Mutability::ReadOnly),
    AttrDef::new("displayName", K::String).required(),
    AttrDef::complex("members", MEMBER_SUBS).multi(),
];

/// RFC 7643 §4.1 User plus the §4.3 enterprise extension.
pub static USER_SCHEMA: ResourceSchema = ResourceSchema {
    core_urn: USER_CORE_URN,
    extension_urns: &[ENTERPRISE_USER_URN],
    attributes: USER_ATTRIBUTES,
    extension_attributes: &[(ENTERPRISE_USER_URN, ENTERPRISE_ATTRIBUTES)],
};

/// RFC 7643 §4.2 Group.
pub static GROUP_SCHEMA: ResourceSchema = ResourceSchema {
    core_urn: GROUP_CORE_URN,
    extension_urns: &[],
    attributes: GROUP_ATTRIBUTES,
    extension_attributes: &[],
};
