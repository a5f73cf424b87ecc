// @requires matches
// The first visible element of a selector's candidates, in one round trip: arguments (candidates).
return firstOf(arguments[0], null, true);
