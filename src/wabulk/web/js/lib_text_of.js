// Library: textOf(node), the text a node shows, with <br> as "\n", emoji <img alt> as their character,
// and block children (Lexical paragraphs) separated by "\n".
function textOf(root) {
  let out = '';
  const BLOCK = /^(P|DIV|LI|H[1-6]|BLOCKQUOTE|PRE)$/;
  function walk(n) {
    let first = true;
    for (let c = n.firstChild; c; c = c.nextSibling) {
      if (c.nodeType === 3) { out += c.data; first = false; continue; }
      if (c.nodeType !== 1) continue;
      if (c.tagName === 'BR') { out += '\n'; first = false; continue; }
      if (c.tagName === 'IMG') {
        out += c.getAttribute('alt') || c.getAttribute('data-plain-text') || '';
        first = false;
        continue;
      }
      if (c.tagName === 'STYLE' || c.tagName === 'SCRIPT') continue;
      if (BLOCK.test(c.tagName) && !first && !out.endsWith('\n')) out += '\n';
      walk(c);
      first = false;
    }
  }
  walk(root);
  return out;
}
