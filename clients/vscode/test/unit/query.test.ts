import assert from "node:assert/strict";
import { test } from "node:test";
import { parseQuery, toSearchArgs, withFilter } from "../../src/common/query";

test("filters are taken out of the query wherever they stand", () => {
  assert.deepEqual(parseQuery("  lang:Python read json glob:src/** config glob:*.py "), {
    query: "read json config",
    lang: "python",
    glob: ["src/**", "*.py"],
  });
  assert.deepEqual(parseQuery("retry http"), { query: "retry http", glob: [] });
  assert.deepEqual(parseQuery(""), { query: "", glob: [] });
});

test("a filter with no value stays part of the query", () => {
  assert.equal(parseQuery("lang: x").query, "lang: x");
});

test("search arguments leave unset filters out", () => {
  assert.deepEqual(toSearchArgs(parseQuery("read json")), { query: "read json" });
  assert.deepEqual(toSearchArgs(parseQuery("language:go sort glob:a/**"), 5), {
    query: "sort",
    k: 5,
    lang: "go",
    glob: ["a/**"],
  });
});

test("the filter buttons rewrite the box text", () => {
  assert.equal(withFilter("lang:go sort users", "lang", "rust"), "lang:rust sort users ");
  assert.equal(withFilter("sort users", "glob", "src/**"), "glob:src/** sort users ");
  assert.equal(withFilter("glob:a/** x", "glob", "b/**"), "glob:b/** glob:a/** x ");
  assert.equal(withFilter("", "lang", "go"), "lang:go ");
});
