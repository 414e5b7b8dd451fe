/** Grants as pg_dump writes them: ACLs read item by item, replayed in order, under each grantor. */

/** An ACL as JSON `[{item, grantee, grantor, privilege, grantable}]` in the array's order, or null for the default. */
export function aclSql(column: string): string {
  return `(SELECT json_agg(json_build_object(
            'item', a.ord, 'grantee', CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x.grantee)) END,
            'grantor', quote_ident(pg_get_userbyid(x.grantor)), 'privilege', x.privilege_type, 'grantable', x.is_grantable) ORDER BY a.ord, x.privilege_type)::text
          FROM unnest(${column}) WITH ORDINALITY AS a(item, ord), aclexplode(ARRAY[a.item]) AS x)`;
}

/**
 * The statements that recreate an ACL item by item, in the array's order. Items granted by the owner
 * run as the restoring role (`owned`). From the first item another role granted (holding the grant
 * option) on, they run under that grantor (`SET ROLE`), as pg_dump writes them, so the grantor is
 * kept and the order too (`delegated`).
 */
function aclPlan(aclJson: string, owner: string, grant: (privileges: string[], grantee: string, withOption: boolean) => string[]): AclPlan {
  const items = (JSON.parse(aclJson) ?? []) as Array<{ item: number; grantee: string; grantor: string; privilege: string; grantable: boolean }>;
  const plan: AclPlan = { owned: [], delegated: [] };
  let role = owner;
  for (let i = 0; i < items.length; ) {
    const { item, grantee, grantor } = items[i]!;
    const privileges = { plain: [] as string[], withOption: [] as string[] };
    for (; i < items.length && items[i]!.item === item; i++) (items[i]!.grantable ? privileges.withOption : privileges.plain).push(items[i]!.privilege);
    const statements = [
      ...(privileges.plain.length > 0 ? grant(privileges.plain, grantee, false) : []),
      ...(privileges.withOption.length > 0 ? grant(privileges.withOption, grantee, true) : []),
    ];
    if (grantor === owner && plan.delegated.length === 0) {
      plan.owned.push(...statements);
      continue;
    }
    if (grantor !== role) {
      if (role !== owner) plan.delegated.push('RESET ROLE;');
      if (grantor !== owner) plan.delegated.push(`SET ROLE ${grantor};`);
      role = grantor;
    }
    plan.delegated.push(...statements);
  }
  if (role !== owner) plan.delegated.push('RESET ROLE;');
  return plan;
}

export interface AclPlan {
  owned: string[];
  delegated: string[];
}

/** Recreates an object's ACL exactly: revoke the defaults, then grant item by item in the original order. */
export function aclStatements(target: string, owner: string, aclJson: string): AclPlan {
  const plan = aclPlan(aclJson, owner, (privileges, grantee, withOption) => [
    `GRANT ${privileges.join(',')} ON ${target} TO ${grantee}${withOption ? ' WITH GRANT OPTION' : ''};`,
  ]);
  return { owned: [`REVOKE ALL ON ${target} FROM PUBLIC;`, `REVOKE ALL ON ${target} FROM ${owner};`, ...plan.owned], delegated: plan.delegated };
}

/** Column privileges, as GRANT … (column) statements. */
export function columnGrants(table: string, column: string, owner: string, aclJson: string): AclPlan {
  return aclPlan(aclJson, owner, (privileges, grantee, withOption) =>
    privileges.map((privilege) => `GRANT ${privilege}(${column}) ON TABLE ${table} TO ${grantee}${withOption ? ' WITH GRANT OPTION' : ''};`),
  );
}

