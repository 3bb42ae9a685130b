/**
 * Helpers for the infra tests: parse Bicep with tree-sitter-bicep and walk the syntax tree.
 *
 * The tree-sitter binding is native and keeps module-level state, so it cannot be loaded again in
 * a second jest module registry of the same worker (its nodes come back empty). Each test file
 * therefore parses every infra/*.bicep once, in one child `node` process, and walks a plain copy
 * of the trees.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

export const REPO_ROOT = path.resolve(__dirname, '../../..');
export const INFRA = path.join(REPO_ROOT, 'infra');

/** The subset of tree-sitter's SyntaxNode the tests use. */
export interface Node {
  type: string;
  text: string;
  isNamed: boolean;
  isMissing: boolean;
  hasError: boolean;
  startPosition: { row: number; column: number };
  parent: Node | null;
  children: Node[];
  namedChildren: Node[];
  namedChildCount: number;
  namedChild(i: number): Node | null;
}

interface RawNode {
  t: string;
  x: string;
  n: boolean;
  m: boolean;
  e: boolean;
  r: number;
  c: number;
  k: RawNode[];
}

const PARSE_SCRIPT = `
const Parser = require('tree-sitter');
const Bicep = require('tree-sitter-bicep');
const fs = require('fs');
const parser = new Parser();
parser.setLanguage(Bicep);
const dump = (n) => ({
  t: n.type, x: n.text, n: n.isNamed, m: n.isMissing, e: n.hasError,
  r: n.startPosition.row, c: n.startPosition.column, k: n.children.map(dump),
});
const out = {};
for (const file of process.argv.slice(1)) {
  const text = fs.readFileSync(file, 'utf8');
  out[file] = dump(parser.parse(text, null, { bufferSize: Math.max(65536, text.length * 2) }).rootNode);
}
process.stdout.write(JSON.stringify(out));
`;

function build(raw: RawNode, parent: Node | null): Node {
  const node: Node = {
    type: raw.t,
    text: raw.x,
    isNamed: raw.n,
    isMissing: raw.m,
    hasError: raw.e,
    startPosition: { row: raw.r, column: raw.c },
    parent,
    children: [],
    namedChildren: [],
    namedChildCount: 0,
    namedChild(i: number): Node | null {
      return this.namedChildren[i] ?? null;
    },
  };
  node.children = raw.k.map((k) => build(k, node));
  node.namedChildren = node.children.filter((c) => c.isNamed);
  node.namedChildCount = node.namedChildren.length;
  return node;
}

export interface BicepFile {
  file: string;
  text: string;
  root: Node;
}

let parsed: Map<string, BicepFile> | undefined;

function parseAll(): Map<string, BicepFile> {
  if (parsed) return parsed;
  const files = allBicepFiles().map((rel) => path.join(INFRA, rel));
  const run = spawnSync(process.execPath, ['-e', PARSE_SCRIPT, ...files], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  if (run.status !== 0) throw new Error(`parsing Bicep failed: ${run.stderr}`);
  const raw = JSON.parse(run.stdout) as Record<string, RawNode>;
  parsed = new Map(
    files.map((file) => [file, { file, text: fs.readFileSync(file, 'utf8'), root: build(raw[file]!, null) }]),
  );
  return parsed;
}

/** Parsed infra/<rel>. */
export function loadBicep(rel: string): BicepFile {
  const hit = parseAll().get(path.join(INFRA, rel));
  if (!hit) throw new Error(`no Bicep file infra/${rel}`);
  return hit;
}

/** Every .bicep file under infra/, relative to infra/. */
export function allBicepFiles(): string[] {
  const out: string[] = [];
  const visit = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) visit(full);
      else if (entry.name.endsWith('.bicep')) out.push(path.relative(INFRA, full));
    }
  };
  visit(INFRA);
  return out.sort();
}

/** Depth-first list of every node below (and including) `node`. */
export function descendants(node: Node): Node[] {
  const out: Node[] = [];
  const stack: Node[] = [node];
  while (stack.length > 0) {
    const n = stack.pop()!;
    out.push(n);
    for (let i = n.namedChildCount - 1; i >= 0; i--) stack.push(n.namedChild(i)!);
  }
  return out;
}

/** Syntax errors as "line:column text" strings (empty when the file parses cleanly). */
export function syntaxErrors(root: Node): string[] {
  return descendants(root)
    .filter((n) => n.type === 'ERROR' || n.isMissing)
    .map((n) => `${n.startPosition.row + 1}:${n.startPosition.column + 1} ${n.text.slice(0, 60)}`);
}

/** The value of a string literal without interpolation; undefined for anything else. */
export function stringLiteral(node: Node | undefined | null): string | undefined {
  if (!node || node.type !== 'string') return undefined;
  if (node.namedChildren.some((c) => c.type === 'interpolation')) return undefined;
  return node.namedChildren.map((c) => (c.type === 'escape_sequence' ? c.text.slice(1) : c.text)).join('');
}

/** The text a string would have with each ${expr} left as ${expr}: handy for URL templates. */
export function stringTemplate(node: Node | undefined | null): string | undefined {
  if (!node || node.type !== 'string') return undefined;
  return node.text.slice(1, -1);
}

/** Key of an object property (identifier or quoted string). */
export function propertyKey(prop: Node): string {
  const key = prop.namedChild(0)!;
  return stringLiteral(key) ?? key.text;
}

/** Value node of an object property. */
export function propertyValue(prop: Node): Node {
  return prop.namedChild(prop.namedChildCount - 1)!;
}

/** Every object property named `key` anywhere below `node`. */
export function findProperties(node: Node, key: string): Node[] {
  return descendants(node).filter((n) => n.type === 'object_property' && propertyKey(n) === key);
}

/** Direct properties of an object node as a map key -> value node. */
export function objectEntries(obj: Node): Map<string, Node> {
  const out = new Map<string, Node>();
  for (const p of obj.namedChildren) if (p.type === 'object_property') out.set(propertyKey(p), propertyValue(p));
  return out;
}

/** Value of `name` in an object: a path such as ['properties', 'configuration', 'triggerType']. */
export function getPath(obj: Node, keys: readonly string[]): Node | undefined {
  let cur: Node | undefined = obj;
  for (const k of keys) {
    if (!cur || cur.type !== 'object') return undefined;
    cur = objectEntries(cur).get(k);
  }
  return cur;
}

/** Value node of `var name = ...`. */
export function variable(root: Node, name: string): Node | undefined {
  const decl = root.namedChildren.find((n) => n.type === 'variable_declaration' && n.namedChild(0)?.text === name);
  return decl ? decl.namedChild(decl.namedChildCount - 1)! : undefined;
}

/** Elements of an array literal. */
export function arrayItems(node: Node | undefined): Node[] {
  return node && node.type === 'array' ? node.namedChildren.filter((n) => n.type !== 'comment') : [];
}

export interface ResourceDecl {
  symbol: string;
  /** Full type string such as Microsoft.App/jobs@2025-01-01. */
  typeString: string;
  type: string;
  apiVersion: string;
  existing: boolean;
  /** The body object (inside `if (...)` or the first-level `for` when present). */
  body: Node;
  node: Node;
}

/** Resource declarations at the top level of a file. */
export function resources(root: Node): ResourceDecl[] {
  return root.namedChildren.filter((n) => n.type === 'resource_declaration').map((n) => resourceDecl(n));
}

function resourceDecl(n: Node): ResourceDecl {
  const typeString = stringLiteral(n.namedChildren.find((c) => c.type === 'string')) ?? '';
  const [type = '', apiVersion = ''] = typeString.split('@');
  const last = n.namedChild(n.namedChildCount - 1)!;
  const body = last.type === 'object' ? last : descendants(last).find((d) => d.type === 'object')!;
  return {
    symbol: n.namedChild(0)!.text,
    typeString,
    type,
    apiVersion,
    existing: n.children.some((c) => c.type === 'existing' || (!c.isNamed && c.text === 'existing')),
    body,
    node: n,
  };
}

/** Resources (top-level or nested) of one type. */
export function resourcesOfType(root: Node, type: string): ResourceDecl[] {
  return descendants(root)
    .filter((n) => n.type === 'resource_declaration')
    .map((n) => resourceDecl(n))
    .filter((r) => r.type === type);
}

export interface ParamDecl {
  name: string;
  type: string;
  defaultValue: Node | undefined;
  decorators: string[];
}

/** `param` declarations with their decorators (text) and default value. */
export function params(root: Node): ParamDecl[] {
  const out: ParamDecl[] = [];
  const children = root.namedChildren;
  children.forEach((n, i) => {
    if (n.type !== 'parameter_declaration') return;
    const decorators: string[] = [];
    for (let j = i - 1; j >= 0 && children[j]!.type === 'decorators'; j--) decorators.push(children[j]!.text);
    const named = n.namedChildren;
    const typeNode = named[1];
    const def = named.length > 2 ? named[named.length - 1] : undefined;
    out.push({ name: named[0]!.text, type: typeNode?.text ?? '', defaultValue: def, decorators });
  });
  return out;
}

export interface OutputDecl {
  name: string;
  value: Node;
}

export function outputs(root: Node): OutputDecl[] {
  return root.namedChildren
    .filter((n) => n.type === 'output_declaration')
    .map((n) => ({ name: n.namedChild(0)!.text, value: n.namedChild(n.namedChildCount - 1)! }));
}

export function readRepoFile(rel: string): string {
  return fs.readFileSync(path.join(REPO_ROOT, rel), 'utf8');
}
