#!/usr/bin/env python3
"""The public API of a crate, one sorted line per item, from rustdoc's JSON output.

Usage: public_api.py target/doc/<crate>.json

Walks the crate from its root module through every public module and re-export, and prints
each item at the path a user names it by (`bramble::Client`, not `bramble::client::Client`):
modules, structs with their public fields, enums with their variants, traits, functions and
methods with their signatures, constants, type aliases, and the trait impls a user can rely
on (explicit impls, and the auto traits Send, Sync and Unpin). Blanket impls (`impl<T> From<T>
for T` and the like) come from other crates and are left out. A re-export of another crate's
item is printed as the `pub use` itself: that item's own API is its crate's.

scripts/public-api compares this with crates/bramble/public-api.txt.
"""

import json
import sys

# Auto traits a user can rely on; rustdoc also lists unstable ones (Freeze, UnsafeUnpin)
# that vary between toolchains.
AUTO_TRAITS = {"Send", "Sync", "Unpin", "UnwindSafe", "RefUnwindSafe"}
# Traits the compiler implements for its own use (a derive of PartialEq adds it).
INTERNAL_TRAITS = {"StructuralPartialEq"}


class Printer:
    def __init__(self, doc):
        self.index = doc["index"]
        self.paths = doc["paths"]
        self.lines = set()
        # Each public item's id -> the path users name it by, for the types in signatures.
        self.public_paths = {}

    def item(self, item_id):
        return self.index.get(str(item_id))

    # --- types -------------------------------------------------------------------------

    def path_name(self, path):
        """A resolved path: the full path of its item where rustdoc knows it."""
        item_id = str(path.get("id"))
        known = self.paths.get(item_id)
        if item_id in self.public_paths:
            name = self.public_paths[item_id]
        elif known:
            name = "::".join(known["path"])
        else:
            name = path["path"]
        return name + self.generic_args(path.get("args"))

    def generic_args(self, args):
        if not args:
            return ""
        if "angle_bracketed" in args:
            ab = args["angle_bracketed"]
            parts = [self.generic_arg(a) for a in ab["args"]]
            parts += [self.constraint(c) for c in ab["constraints"]]
            return "<" + ", ".join(parts) + ">" if parts else ""
        if "parenthesized" in args:
            p = args["parenthesized"]
            out = "(" + ", ".join(self.ty(t) for t in p["inputs"]) + ")"
            if p.get("output") is not None:
                out += " -> " + self.ty(p["output"])
            return out
        return ""

    def generic_arg(self, arg):
        if "type" in arg:
            return self.ty(arg["type"])
        if "lifetime" in arg:
            return arg["lifetime"]
        if "const" in arg:
            return arg["const"].get("expr", "_")
        return "_"

    def constraint(self, c):
        name = c["name"] + self.generic_args(c.get("args"))
        binding = c["binding"]
        if "equality" in binding:
            term = binding["equality"]
            value = self.ty(term["type"]) if "type" in term else term["constant"].get("expr", "_")
            return f"{name} = {value}"
        return f"{name}: " + self.bounds(binding["constraint"])

    def bounds(self, bounds):
        return " + ".join(self.bound(b) for b in bounds)

    def bound(self, b):
        if "trait_bound" in b:
            tb = b["trait_bound"]
            modifier = {"none": "", "maybe": "?", "maybe_const": "~const "}.get(tb["modifier"], "")
            hrtb = self.for_lifetimes(tb.get("generic_params", []))
            return hrtb + modifier + self.path_name(tb["trait"])
        if "outlives" in b:
            return b["outlives"]
        if "use" in b:
            return "use<" + ", ".join(str(a) for a in b["use"]) + ">"
        return "?"

    def for_lifetimes(self, params):
        names = [p["name"] for p in params]
        return f"for<{', '.join(names)}> " if names else ""

    def ty(self, t):
        if t is None:
            return "()"
        (kind, v), = t.items()
        if kind == "resolved_path":
            return self.path_name(v)
        if kind == "dyn_trait":
            parts = [self.for_lifetimes(p["generic_params"]) + self.path_name(p["trait"])
                     for p in v["traits"]]
            if v.get("lifetime"):
                parts.append(v["lifetime"])
            return "dyn " + " + ".join(parts)
        if kind == "generic":
            return v
        if kind == "primitive":
            return v
        if kind == "function_pointer":
            sig = v["sig"]
            inputs = ", ".join(self.ty(i[1]) for i in sig["inputs"])
            out = "" if sig["output"] is None else " -> " + self.ty(sig["output"])
            return f"fn({inputs}){out}"
        if kind == "tuple":
            return "(" + ", ".join(self.ty(x) for x in v) + ("," if len(v) == 1 else "") + ")"
        if kind == "slice":
            return "[" + self.ty(v) + "]"
        if kind == "array":
            return f"[{self.ty(v['type'])}; {v['len']}]"
        if kind == "impl_trait":
            return "impl " + self.bounds(v)
        if kind == "infer":
            return "_"
        if kind == "raw_pointer":
            return ("*mut " if v["is_mutable"] else "*const ") + self.ty(v["type"])
        if kind == "borrowed_ref":
            lt = v["lifetime"] + " " if v.get("lifetime") else ""
            mutable = "mut " if v["is_mutable"] else ""
            return f"&{lt}{mutable}{self.ty(v['type'])}"
        if kind == "qualified_path":
            self_ty = self.ty(v["self_type"])
            name = v["name"] + self.generic_args(v.get("args"))
            if v.get("trait"):
                return f"<{self_ty} as {self.path_name(v['trait'])}>::{name}"
            return f"{self_ty}::{name}"
        if kind == "pat":
            return self.ty(v["type"])
        return kind

    def generics(self, g):
        """`<...>` and the where clause of an item's generics (synthetic `impl Trait`
        parameters are shown in the argument instead)."""
        params = []
        for p in g["params"]:
            kind = p["kind"]
            if "lifetime" in kind:
                outlives = kind["lifetime"]["outlives"]
                params.append(p["name"] + (": " + " + ".join(outlives) if outlives else ""))
            elif "type" in kind:
                if kind["type"].get("is_synthetic"):
                    continue
                b = kind["type"]["bounds"]
                default = kind["type"].get("default")
                text = p["name"] + (": " + self.bounds(b) if b else "")
                if default is not None:
                    text += " = " + self.ty(default)
                params.append(text)
            elif "const" in kind:
                params.append(f"const {p['name']}: {self.ty(kind['const']['type'])}")
        where = []
        for w in g["where_predicates"]:
            if "bound_predicate" in w:
                bp = w["bound_predicate"]
                where.append(self.for_lifetimes(bp.get("generic_params", []))
                             + self.ty(bp["type"]) + ": " + self.bounds(bp["bounds"]))
            elif "lifetime_predicate" in w:
                lp = w["lifetime_predicate"]
                where.append(lp["lifetime"] + ": " + " + ".join(lp["outlives"]))
            elif "eq_predicate" in w:
                ep = w["eq_predicate"]
                rhs = ep["rhs"]
                where.append(self.ty(ep["lhs"]) + " = "
                             + (self.ty(rhs["type"]) if "type" in rhs else "_"))
        head = "<" + ", ".join(params) + ">" if params else ""
        tail = " where " + ", ".join(where) if where else ""
        return head, tail

    # --- items -------------------------------------------------------------------------

    def fn_sig(self, name, f):
        header = f["header"]
        quals = ""
        if header["is_const"]:
            quals += "const "
        if header["is_async"]:
            quals += "async "
        if header["is_unsafe"]:
            quals += "unsafe "
        head, where = self.generics(f["generics"])
        args = []
        for arg_name, arg_ty in f["sig"]["inputs"]:
            if arg_name == "self":
                args.append(self.self_arg(arg_ty))
            else:
                args.append(f"{arg_name}: {self.ty(arg_ty)}")
        out = f["sig"]["output"]
        ret = "" if out is None else " -> " + self.ty(out)
        return f"{quals}fn {name}{head}({', '.join(args)}){ret}{where}"

    def self_arg(self, t):
        if "generic" in t and t["generic"] == "Self":
            return "self"
        if "borrowed_ref" in t and t["borrowed_ref"]["type"] == {"generic": "Self"}:
            r = t["borrowed_ref"]
            lt = r["lifetime"] + " " if r.get("lifetime") else ""
            return "&" + lt + ("mut " if r["is_mutable"] else "") + "self"
        return "self: " + self.ty(t)

    def add(self, line):
        if not self.recording:
            self.lines.add(line)

    def module(self, path, item):
        self.add(f"pub mod {path}")
        for child_id in item["inner"]["module"]["items"]:
            child = self.item(child_id)
            if child is None or child["visibility"] != "public":
                continue
            if "use" in child["inner"]:
                self.reexport(path, child["inner"]["use"])
            else:
                self.visit(f"{path}::{child['name']}", child)

    def reexport(self, path, use):
        target = self.item(use["id"]) if use.get("id") is not None else None
        if use["is_glob"]:
            if target is not None and "module" in target["inner"]:
                for child_id in target["inner"]["module"]["items"]:
                    child = self.item(child_id)
                    if child is not None and child["visibility"] == "public":
                        if "use" in child["inner"]:
                            self.reexport(path, child["inner"]["use"])
                        else:
                            self.visit(f"{path}::{child['name']}", child)
            else:
                self.add(f"pub use {path}::{use['source']}::*")
            return
        if target is None:
            # Another crate's item: its API is that crate's.
            known = self.paths.get(str(use.get("id")))
            source = "::".join(known["path"]) if known else use["source"]
            self.add(f"pub use {path}::{use['name']} = {source}")
            return
        self.visit(f"{path}::{use['name']}", target)

    def visit(self, path, item):
        self.public_paths.setdefault(str(item["id"]), path)
        (kind, inner), = item["inner"].items()
        if kind == "module":
            self.module(path, item)
        elif kind == "struct":
            head, where = self.generics(inner["generics"])
            self.add(f"pub struct {path}{head}{where}")
            k = inner["kind"]
            if isinstance(k, dict) and "plain" in k:
                for fid in k["plain"]["fields"]:
                    field = self.item(fid)
                    if field is not None and field["visibility"] == "public":
                        self.add(f"pub {path}::{field['name']}: {self.ty(field['inner']['struct_field'])}")
            elif isinstance(k, dict) and "tuple" in k:
                for i, fid in enumerate(k["tuple"]):
                    field = self.item(fid) if fid is not None else None
                    if field is not None and field["visibility"] == "public":
                        self.add(f"pub {path}::{i}: {self.ty(field['inner']['struct_field'])}")
            self.impls(path, inner["impls"])
        elif kind == "enum":
            head, where = self.generics(inner["generics"])
            self.add(f"pub enum {path}{head}{where}")
            for vid in inner["variants"]:
                self.variant(path, self.item(vid))
            self.impls(path, inner["impls"])
        elif kind == "union":
            head, where = self.generics(inner["generics"])
            self.add(f"pub union {path}{head}{where}")
            self.impls(path, inner["impls"])
        elif kind == "trait":
            head, where = self.generics(inner["generics"])
            unsafe = "unsafe " if inner["is_unsafe"] else ""
            supers = ": " + self.bounds(inner["bounds"]) if inner["bounds"] else ""
            self.add(f"pub {unsafe}trait {path}{head}{supers}{where}")
            for iid in inner["items"]:
                self.assoc(path, self.item(iid), in_trait=True)
        elif kind == "function":
            self.add(f"pub {self.fn_sig(path, inner)}")
        elif kind == "constant":
            self.add(f"pub const {path}: {self.ty(inner['type'])}")
        elif kind == "static":
            mutable = "mut " if inner["is_mutable"] else ""
            self.add(f"pub static {mutable}{path}: {self.ty(inner['type'])}")
        elif kind == "type_alias":
            head, where = self.generics(inner["generics"])
            self.add(f"pub type {path}{head} = {self.ty(inner['type'])}{where}")
        elif kind == "macro":
            self.add(f"pub macro {path}!")
        else:
            self.add(f"pub {kind} {path}")

    def variant(self, path, v):
        k = v["inner"]["variant"]["kind"]
        name = f"{path}::{v['name']}"
        if k == "plain":
            self.add(f"pub {name}")
        elif "tuple" in k:
            tys = [self.ty(self.item(f)["inner"]["struct_field"]) if f is not None else "_"
                   for f in k["tuple"]]
            self.add(f"pub {name}({', '.join(tys)})")
        elif "struct" in k:
            self.add(f"pub {name} {{ .. }}")
            for fid in k["struct"]["fields"]:
                field = self.item(fid)
                self.add(f"pub {name}::{field['name']}: {self.ty(field['inner']['struct_field'])}")

    def impls(self, path, impl_ids):
        for iid in impl_ids:
            imp = self.item(iid)["inner"]["impl"]
            if imp["blanket_impl"] is not None:
                continue
            head, where = self.generics(imp["generics"])
            neg = "!" if imp["is_negative"] else ""
            if imp["trait"] is None:
                # Inherent methods and constants: only the public ones.
                for aid in imp["items"]:
                    assoc = self.item(aid)
                    if assoc is not None and assoc["visibility"] == "public":
                        self.assoc(path, assoc, in_trait=False)
                continue
            trait = self.path_name(imp["trait"])
            if imp["trait"]["path"].split("::")[-1] in INTERNAL_TRAITS:
                continue
            if imp["is_synthetic"] and imp["trait"]["path"].split("::")[-1] not in AUTO_TRAITS:
                continue
            # Associated types are part of the impl (`Deref`'s `Target`).
            assoc = []
            for aid in imp["items"]:
                a = self.item(aid)
                if a is not None and "assoc_type" in a["inner"] and a["inner"]["assoc_type"].get("type"):
                    assoc.append(f"type {a['name']} = {self.ty(a['inner']['assoc_type']['type'])};")
            body = " { " + " ".join(assoc) + " }" if assoc else ""
            self.add(f"impl{head} {neg}{trait} for {self.ty(imp['for'])}{where}{body}")

    def assoc(self, path, item, in_trait):
        (kind, inner), = item["inner"].items()
        name = f"{path}::{item['name']}"
        prefix = "" if in_trait else "pub "
        if kind == "function":
            self.add(prefix + self.fn_sig(name, inner))
        elif kind == "assoc_const":
            self.add(f"{prefix}const {name}: {self.ty(inner['type'])}")
        elif kind == "assoc_type":
            b = inner.get("bounds") or []
            self.add(f"{prefix}type {name}" + (": " + self.bounds(b) if b else ""))
        elif kind == "constant":
            self.add(f"{prefix}const {name}: {self.ty(inner['type'])}")


def main():
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    printer = Printer(doc)
    root = printer.item(doc["root"])
    # Two walks: the first learns every item's public path, so that the second names the
    # types in signatures as users do (`bramble::Error`, not `bramble::error::Error`).
    for recording in (True, False):
        printer.recording = recording
        printer.module(root["name"], root)
    for line in sorted(printer.lines):
        print(line)


if __name__ == "__main__":
    main()
