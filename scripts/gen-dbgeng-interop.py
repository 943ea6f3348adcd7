#!/usr/bin/env python3
"""Generates Extension/Interop/DbgEng.g.cs from the real dbgeng.h (NuGet Microsoft.Debugging.Platform.DbgEng).

Every method of each selected interface is emitted in the header's vtable order (IUnknown's three are supplied by
[GeneratedComInterface]). Parameters are mapped to blittable types (pointers stay pointers) so the source generator
needs no marshalling; '...' (STDMETHODV) becomes one pointer-sized argument (win-x64 variadic ABI = normal ABI).
Usage: scripts/gen-dbgeng-interop.py [path/to/dbgeng.h] > Extension/Interop/DbgEng.g.cs
"""
import os, re, sys

INTERFACES = ["IDebugClient", "IDebugControl4", "IDebugDataSpaces4", "IDebugSymbols3", "IDebugSystemObjects", "IDebugSystemObjects2", "IDebugAdvanced2", "IDebugOutputCallbacks"]

def header_path():
    if len(sys.argv) > 1: return sys.argv[1]
    return os.path.expanduser("~/.nuget/packages/microsoft.debugging.platform.dbgeng/20260109.1235.0/build/native/inc/dbgeng.h")

def strip_comments(s):
    s = re.sub(r"/\*.*?\*/", " ", s, flags=re.S)
    return re.sub(r"//[^\n]*", " ", s)

def parse(text):
    text = strip_comments(text)
    iids = {}
    for m in re.finditer(r"DEFINE_GUID\(\s*IID_(\w+)\s*,([^)]*)\)", text):
        parts = [int(p.strip(), 16) for p in m.group(2).split(",")]
        iids[m.group(1)] = "%08x-%04x-%04x-%02x%02x-%s" % (parts[0], parts[1], parts[2], parts[3], parts[4],
                                                          "".join("%02x" % b for b in parts[5:]))
    ifaces = {}
    for m in re.finditer(r"DECLARE_INTERFACE_\(\s*(\w+)\s*,\s*\w+\s*\)\s*\{", text):
        name, start = m.group(1), m.end()
        depth, i = 1, start
        while depth:
            if text[i] == "{": depth += 1
            elif text[i] == "}": depth -= 1
            i += 1
        body = text[start:i - 1]
        methods = []
        for mm in re.finditer(r"STDMETHOD(V?)(?:_\(\s*(\w+)\s*,\s*(\w+)\s*\)|\(\s*(\w+)\s*\))\s*\((.*?)\)\s*PURE\s*;", body, re.S):
            mname = mm.group(3) or mm.group(4)
            methods.append((mname, mm.group(2) or "HRESULT", bool(mm.group(1)), split_params(mm.group(5))))
        ifaces[name] = methods
    return iids, ifaces

def strip_sal(p):
    out, i = [], 0
    toks = re.findall(r"\w+|\(|\)|\*|\.\.\.|[^\s\w]", p)
    while i < len(toks):
        t = toks[i]
        if t.startswith("_") and t.endswith("_") or t in ("IN", "OUT", "OPTIONAL", "CONST"):
            i += 1
            if i < len(toks) and toks[i] == "(":
                depth = 1; i += 1
                while depth:
                    if toks[i] == "(": depth += 1
                    elif toks[i] == ")": depth -= 1
                    i += 1
            continue
        out.append(t); i += 1
    return out

def split_params(s):
    s = s.strip()
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(": depth += 1
        if ch == ")": depth -= 1
        if ch == "," and depth == 0: parts.append(cur); cur = ""
        else: cur += ch
    if cur.strip(): parts.append(cur)
    res = []
    for p in parts:
        toks = strip_sal(p)
        if toks in (["THIS"], ["THIS_"]) or not toks: continue
        if toks[0] in ("THIS_", "THIS"): toks = toks[1:]
        if toks == ["..."]: res.append(("...", "VarArg")); continue
        name = toks[-1]; typ = " ".join(toks[:-1]).replace(" *", "*")
        res.append((typ, name))
    return res

SCALARS = {"ULONG": "uint", "DWORD": "uint", "UINT": "uint", "LONG": "int", "INT": "int", "HRESULT": "int",
           "BOOL": "int", "ULONG64": "ulong", "DWORD64": "ulong", "LONG64": "long", "USHORT": "ushort",
           "UCHAR": "byte", "BOOLEAN": "byte", "ULONG_PTR": "nuint", "va_list": "void*", "...": "void*",
           "FARPROC": "void*", "HANDLE": "void*"}
POINTERS = {"PULONG": "uint*", "PULONG64": "ulong*", "PLONG": "int*", "PLONG64": "long*", "PBOOL": "int*",
            "PSTR": "byte*", "PCSTR": "byte*", "PWSTR": "char*", "PCWSTR": "char*", "PVOID": "void*",
            "PVOID*": "void**", "REFIID": "Guid*", "REFGUID": "Guid*", "LPGUID": "Guid*", "PUSHORT": "ushort*",
            "PUCHAR": "byte*", "PBOOLEAN": "byte*", "PDWORD": "uint*", "PDWORD64": "ulong*"}
KEYWORDS = {"virtual", "private", "public", "internal", "static", "default", "new", "this", "is", "as", "case", "do", "if", "for", "while", "char", "int", "long", "byte", "void", "ulong", "uint", "short", "ushort", "bool", "true", "false", "null", "return", "switch", "try", "catch", "finally", "throw", "using", "namespace", "struct", "enum", "interface", "delegate", "const", "readonly", "sizeof", "typeof", "unsafe", "volatile", "extern", "abstract", "override", "sealed", "explicit", "implicit", "goto", "break", "continue", "else", "foreach", "decimal", "float", "double", "sbyte", "stackalloc", "checked", "unchecked", "object", "string", "base", "event", "params", "in", "out", "ref", "lock", "operator", "class", "fixed", "checked"}

def cs_type(t):
    if t in SCALARS: return SCALARS[t]
    if t in POINTERS: return POINTERS[t]
    if t.endswith("*") or t.startswith("P") or t.startswith("LP"): return "void*"
    raise SystemExit("unmapped type: " + t)

def main():
    iids, ifaces = parse(open(header_path(), encoding="latin-1").read())
    o = []
    o.append("// <auto-generated> by scripts/gen-dbgeng-interop.py from dbgeng.h (Microsoft.Debugging.Platform.DbgEng 20260109.1235.0).")
    o.append("// Do not edit by hand: regenerate. Methods are in the header's vtable order; Extension.Tests/Interop checks it.")
    o.append("// </auto-generated>")
    o.append("#pragma warning disable CS1591, IDE1006")
    o.append("using System.Runtime.InteropServices;")
    o.append("using System.Runtime.InteropServices.Marshalling;\n")
    o.append("namespace NtSleuth.Extension.Interop;\n")
    for name in INTERFACES:
        methods = [m for m in ifaces[name] if m[0] not in ("QueryInterface", "AddRef", "Release")]
        o.append(f"[GeneratedComInterface(StringMarshalling = StringMarshalling.Utf8)]")
        o.append(f"[Guid(\"{iids[name]}\")]")
        o.append(f"public unsafe partial interface {name}")
        o.append("{")
        for (mname, ret, var, params) in methods:
            if ret != "HRESULT": raise SystemExit("non-HRESULT method " + mname)
            ps = []
            for (t, n) in params:
                n = n[0].lower() + n[1:]
                if n in KEYWORDS: n = "@" + n
                ps.append(f"{cs_type(t)} {n}")
            o.append(f"    [PreserveSig] int {mname}({', '.join(ps)});" + ("  // variadic" if var else ""))
        o.append("}\n")
    sys.stdout.write("\n".join(o))

if __name__ == "__main__":
    main()
