// @requires matches
// File inputs for the attach flow: arguments ({op, inputs: candidates, token?, root?, kind?}).
//   "inside": the file input inside `root` (older builds keep it in the menu item)
//   "ours":   the input an earlier "new" took for `kind` (the page keeps and reuses it)
//   "mark":   mark every file input now with `token` (returns how many)
//   "new":    the input not marked with `token` (the one the chosen item just created), remembered for `kind`
const a = arguments[0];
if (a.op === 'inside') return firstOf(a.inputs, a.root, false);
const all = allOf(a.inputs, null);
if (a.op === 'ours') return all.find(el => el.__wabulkKind === a.kind) || null;
if (a.op === 'mark') { for (const el of all) el.__wabulkSeen = a.token; return all.length; }
const el = all.find(e => e.__wabulkSeen !== a.token) || null;
if (el) el.__wabulkKind = a.kind;
return el;
