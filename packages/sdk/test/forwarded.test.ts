import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatForwardedElement, forwardedClientAddress, forwardedNode, parseForwarded } from "../src/forwarded.js";

describe("forwarded: the client address is the rightmost hop", () => {
  it("parses tokens, quoted strings with escapes, several elements; refuses malformed values", () => {
    assert.deepEqual(parseForwarded('for=192.0.2.43, for="[2001:db8:cafe::17]:4711";proto=https;host="a\\"b:8080"'), [
      { for: "192.0.2.43" },
      { for: "[2001:db8:cafe::17]:4711", proto: "https", host: 'a"b:8080' },
    ]);
    assert.deepEqual(parseForwarded("For=x ; Proto=http"), [{ for: "x", proto: "http" }]);
    for (const bad of ['for="10.0.0.1', "for", "for=a b", "for=a;for=b", "=x", 'for=a,"x"', "for=[::1]"])
      assert.equal(parseForwarded(bad), undefined, bad);
  });

  it("formats what it parses (IPv6 bracketed and quoted, host with a port quoted)", () => {
    const el = { for: forwardedNode("::ffff:127.0.0.1"), proto: "http", host: "127.0.0.1:8080" };
    const text = formatForwardedElement(el);
    assert.equal(text, 'for="[::ffff:127.0.0.1]";proto=http;host="127.0.0.1:8080"');
    assert.deepEqual(parseForwarded(text), [el]);
    assert.equal(formatForwardedElement({ for: "10.0.0.1", host: 'x"y' }), 'for=10.0.0.1;host="x\\"y"');
  });

  it("takes the LAST Forwarded element's for, else the LAST X-Forwarded-For entry; a client's claims are ignored", () => {
    const proxyHop = formatForwardedElement({ for: forwardedNode("127.0.0.1"), proto: "http" });
    assert.equal(forwardedClientAddress({ forwarded: `for=6.6.6.6, ${proxyHop}` }), "127.0.0.1");
    assert.equal(forwardedClientAddress({ forwarded: formatForwardedElement({ for: forwardedNode("::1") }) }), "::1");
    assert.equal(forwardedClientAddress({ "x-forwarded-for": "6.6.6.6, 7.7.7.7,127.0.0.1" }), "127.0.0.1");
    assert.equal(forwardedClientAddress({ "x-forwarded-for": ["6.6.6.6", "10.0.0.2"] }), "10.0.0.2");
    // Both present: Forwarded wins; a malformed Forwarded falls back to X-Forwarded-For.
    assert.equal(forwardedClientAddress({ forwarded: "for=10.0.0.3", "x-forwarded-for": "10.0.0.4" }), "10.0.0.3");
    assert.equal(forwardedClientAddress({ forwarded: 'for="x', "x-forwarded-for": "1.1.1.1, 10.0.0.4" }), "10.0.0.4");
    assert.equal(forwardedClientAddress({}), undefined);
  });
});
