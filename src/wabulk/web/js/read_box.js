// @requires text_of
// The text of a compose/caption box or of an <input>: arguments (element).
const e = arguments[0];
return e.tagName === 'INPUT' ? e.value : textOf(e);
