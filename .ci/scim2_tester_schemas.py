"""Builds the copy of our /Schemas that steers scim2-tester (given to `scim2 -s FILE`).

usage: python3 scim2_tester_schemas.py SERVER_SCHEMAS_JSON OUT_JSON

The server's own /Schemas stays as it is; only the tester's copy changes, in two ways that
follow from essentry's semantics (see README, "SCIM compatibility notes"):

* userName must be the user's real email address. scim2-tester fills a field from its
  `canonicalValues` when there are any, so we give userName a large pool of unique
  addresses. The tester draws with replacement, so the pool is large enough that two users
  alive at the same time practically never draw the same address (about 150 creations with
  at most four users alive: p < 0.2% per run with 500,000 addresses).
* active=false deletes the account. The tester writes random booleans to `active` and then
  expects to read the user back, so the tester's copy marks `active` readOnly: it never
  writes it, and still accepts it in responses.
* Group members carry `display`, filled in by the server from the user (readOnly). The tester
  compares a PATCHed `members` value with what it reads back field by field, so the display it
  never sent reads as a difference. The tester's copy marks `members` readOnly: it no longer
  PATCHes members (tests/it/scim_groups.rs covers member PATCH on both backends) and still
  validates every group it reads, `display` included.
"""
import json
import sys
import uuid

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
POOL = 500_000


def main(src: str, out: str) -> None:
    with open(src) as f:
        payload = json.load(f)
    schemas = payload["Resources"] if isinstance(payload, dict) else payload
    seen = set()
    for schema in schemas:
        schema.pop("meta", None)
        if schema["id"] == GROUP:
            for attr in schema["attributes"]:
                if attr["name"] == "members":
                    attr["mutability"] = "readOnly"
                    seen.add("members")
            continue
        if schema["id"] != USER:
            continue
        for attr in schema["attributes"]:
            if attr["name"] == "userName":
                attr["canonicalValues"] = [f"t-{uuid.uuid4().hex}@example.com" for _ in range(POOL)]
                seen.add("userName")
            elif attr["name"] == "active":
                attr["mutability"] = "readOnly"
                seen.add("active")
    wanted = {"userName", "active", "members"}
    if seen != wanted:
        sys.exit(f"the server's schemas lack {sorted(wanted - seen)}")
    with open(out, "w") as f:
        json.dump(schemas, f)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
