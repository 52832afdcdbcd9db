//! Ready-made tenants: a small, hand-written one for the `demo` command and tests that want
//! realistic variety, and a generated one of any size for benchmarks. Ids are fixed (not random)
//! so that runs are reproducible.

use super::state::{SimGroup, SimUser, Tenant};

/// Tenant id of [`sample_tenant`].
pub const SAMPLE_TENANT_ID: &str = "0c8f1b7e-3d5a-4e6f-9a21-6b4c2d8e7f10";
/// Client (application) id of the app registration in [`sample_tenant`].
pub const SAMPLE_CLIENT_ID: &str = "3f2a9c4d-1b6e-4f80-a5d7-9e0c1b2a3d4e";
/// Client secret of [`sample_tenant`] (and [`large_tenant`]).
pub const SAMPLE_CLIENT_SECRET: &str = "sim~client.secret-0123456789abcdef";
/// Object id of our service principal in [`sample_tenant`] and [`large_tenant`].
pub const SAMPLE_SERVICE_PRINCIPAL_ID: &str = "a7d3e9f1-52c4-4b8a-9e6d-1f0c3b5a7d92";
/// The app role that assignments grant in [`sample_tenant`] and [`large_tenant`].
pub const SAMPLE_APP_ROLE_ID: &str = "18d14569-c3bd-439b-9a66-3a2aee01d14f";

/// A GUID-shaped id from a kind tag and a number, stable across runs.
fn fixed_id(kind: u32, n: u64) -> String {
    format!("{kind:08x}-0000-4000-8000-{n:012x}")
}

fn base_tenant(domain: &str) -> Tenant {
    let mut t = Tenant::new(SAMPLE_TENANT_ID, SAMPLE_CLIENT_ID, SAMPLE_CLIENT_SECRET);
    t.domain = domain.to_owned();
    t.service_principal_id = SAMPLE_SERVICE_PRINCIPAL_ID.to_owned();
    t.app_role_id = SAMPLE_APP_ROLE_ID.to_owned();
    t
}

/// A sample tenant for the demo, `contoso.onmicrosoft.com`, with 20 users in six departments:
///
/// - groups "Engineering" (five users plus the nested group "Platform Team", two users) and
///   "Sales" (five users) are assigned; "Platform Team" only through its parent;
/// - seven users are assigned directly, one of them (Pradeep Gupta) also through Engineering;
/// - three users are disabled (Henrietta Mueller, Lee Gu, Debra Berger);
/// - Megan Bowen's UPN is `megan.bowen@contoso.onmicrosoft.com` while her `mail` is
///   `megan.bowen@contoso.com`; Allan Deyoung has no `mail` at all;
/// - three Finance users are not assigned and must not be synced.
pub fn sample_tenant() -> Tenant {
    let mut t = base_tenant("contoso.onmicrosoft.com");
    // (given, surname, department, job title, enabled)
    let people: [(&str, &str, &str, &str, bool); 20] = [
        ("Adele", "Vance", "Engineering", "Software Engineer", true),
        ("Alex", "Wilber", "Engineering", "Engineering Manager", true),
        (
            "Diego",
            "Siciliani",
            "Engineering",
            "Site Reliability Engineer",
            true,
        ),
        ("Grady", "Archie", "Engineering", "Platform Engineer", true),
        ("Henrietta", "Mueller", "Engineering", "QA Engineer", false),
        ("Isaiah", "Langer", "Sales", "Account Executive", true),
        ("Johanna", "Lorenz", "Sales", "Sales Manager", true),
        ("Joni", "Sherman", "Sales", "Account Executive", true),
        ("Lee", "Gu", "Sales", "Sales Engineer", false),
        ("Lidia", "Holloway", "Support", "Support Lead", true),
        ("Lynne", "Robbins", "Support", "Support Engineer", true),
        ("Megan", "Bowen", "Marketing", "Marketing Manager", true),
        ("Miriam", "Graham", "Finance", "Controller", true),
        (
            "Nestor",
            "Wilke",
            "Operations",
            "Director of Operations",
            true,
        ),
        ("Patti", "Fernandez", "Finance", "Accountant", true),
        ("Pradeep", "Gupta", "Engineering", "Data Engineer", true),
        ("Allan", "Deyoung", "IT", "IT Administrator", true),
        ("Debra", "Berger", "Support", "Support Engineer", false),
        ("Christie", "Cline", "Sales", "Sales Associate", true),
        ("Emily", "Braun", "Finance", "Financial Analyst", true),
    ];
    let mut ids = Vec::with_capacity(people.len());
    for (i, (given, surname, department, title, enabled)) in people.iter().enumerate() {
        let local = format!("{}.{}", given, surname).to_ascii_lowercase();
        let (upn, mail) = match *given {
            "Megan" => (
                format!("{local}@contoso.onmicrosoft.com"),
                Some(format!("{local}@contoso.com")),
            ),
            "Allan" => (format!("{local}@contoso.com"), None),
            _ => (
                format!("{local}@contoso.com"),
                Some(format!("{local}@contoso.com")),
            ),
        };
        let mut user = SimUser::new(&upn)
            .with_id(fixed_id(0x5a5a_0001, i as u64 + 1))
            .named(given, surname)
            .in_department(department)
            .with_job_title(title);
        user.mail = mail;
        user.account_enabled = *enabled;
        ids.push(t.add_user(user));
    }
    let id = |given: &str| -> String {
        people
            .iter()
            .position(|p| p.0 == given)
            .map(|i| ids[i].clone())
            .unwrap_or_default()
    };
    let platform = t.add_group(
        SimGroup::new("Platform Team")
            .with_id(fixed_id(0x5a5a_0002, 3))
            .with_members([id("Diego"), id("Grady")]),
    );
    let engineering = t.add_group(
        SimGroup::new("Engineering")
            .with_id(fixed_id(0x5a5a_0002, 1))
            .with_members([
                id("Adele"),
                id("Alex"),
                id("Henrietta"),
                id("Pradeep"),
                platform,
            ]),
    );
    let sales = t.add_group(
        SimGroup::new("Sales")
            .with_id(fixed_id(0x5a5a_0002, 2))
            .with_members([
                id("Isaiah"),
                id("Johanna"),
                id("Joni"),
                id("Lee"),
                id("Christie"),
            ]),
    );
    t.assign(&engineering);
    t.assign(&sales);
    for given in [
        "Lidia", "Lynne", "Megan", "Nestor", "Pradeep", "Allan", "Debra",
    ] {
        t.assign(&id(given));
    }
    t
}

/// Members per group in [`large_tenant`].
pub const LARGE_GROUP_SIZE: usize = 5_000;

/// A generated tenant (`bench.onmicrosoft.com`) of `n` assigned users: the first tenth assigned
/// directly, the rest through groups of [`LARGE_GROUP_SIZE`] members ("Bench Group 1", ...).
/// Users are `user000001@bench.example` and so on, all enabled, with `mail` equal to the UPN.
pub fn large_tenant(n: usize) -> Tenant {
    let mut t = base_tenant("bench.onmicrosoft.com");
    let direct = n / 10;
    let mut group_members: Vec<String> = Vec::with_capacity(LARGE_GROUP_SIZE);
    let mut group_no = 0u64;
    for i in 0..n {
        let no = i as u64 + 1;
        let upn = format!("user{no:06}@bench.example");
        let user = SimUser::new(&upn)
            .with_id(fixed_id(0xbe0c_0001, no))
            .named("User", &format!("{no:06}"))
            .with_mail(&upn)
            .in_department(["Engineering", "Sales", "Support", "Finance"][i % 4]);
        let id = t.add_user(user);
        if i < direct {
            t.assign_new(&id, false);
        } else {
            group_members.push(id);
            if group_members.len() == LARGE_GROUP_SIZE || i + 1 == n {
                group_no += 1;
                let group = SimGroup::new(&format!("Bench Group {group_no}"))
                    .with_id(fixed_id(0xbe0c_0002, group_no))
                    .with_members(std::mem::take(&mut group_members));
                let gid = t.add_group(group);
                t.assign_new(&gid, true);
            }
        }
    }
    t
}
