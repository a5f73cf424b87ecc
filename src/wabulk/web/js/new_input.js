// @requires matches
// The file input that was not there when mark_inputs.js ran with this token (the one the chosen attach
// item created), or, with a root, the file input inside that element (older builds keep it in the item):
// arguments (file input candidates, token, root?).
const cands = arguments[0], token = arguments[1], root = arguments[2];
if (root) return firstOf(cands, root, false);
return allOf(cands, null).find(el => el.__wabulkSeen !== token) || null;
