# Offline stand-in for nixpkgs' lib: the functions nix/ uses and a small evalModules (declared
# options with defaults and type checks, submodules, attrsOf, mkIf, list concatenation, imports
# deduplicated by path). It cannot check priorities or the real NixOS option set; the real thing
# is evaluated against clan-core while developing (see nix/README.md).
let
  showPath = builtins.concatStringsSep ".";
  isIf = v: builtins.isAttrs v && (v._type or null) == "if";
  isOpt = v: builtins.isAttrs v && (v._type or null) == "option";
  isDrv = v: builtins.isAttrs v && (v.type or null) == "derivation";
  # a set of definitions to merge name by name, not a value of its own (option, type, package)
  isTree = v: builtins.isAttrs v && !(v ? _type) && !(isDrv v);
  typeError = path: name: v:
    throw "option ${showPath path}: value ${builtins.toJSON v} is not of type ${name}";
  leaf = name: check: {
    _type = "type";
    inherit name;
    coerce = path: v: if check v then v else typeError path name v;
  };
  wrap = name: nested: coerce: { _type = "type"; inherit name nested coerce; };
  # mkIf is pushed down to the leaves, so attribute names never depend on a condition
  pushIf = cond: v:
    if isTree v && v != { }
    then builtins.mapAttrs (_: pushIf cond) v
    else { _type = "if"; condition = cond; content = v; };
  empty = { _type = "empty"; };
  isEmpty = v: builtins.isAttrs v && (v._type or null) == "empty";

  lib = rec {
    mkOption = attrs: attrs // { _type = "option"; };
    mkIf = pushIf;
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    nameValuePair = name: value: { inherit name value; };
    mapAttrs' = f: set: builtins.listToAttrs (map (n: f n set.${n}) (builtins.attrNames set));
    filterAttrs = pred: set:
      builtins.listToAttrs (map (n: { name = n; value = set.${n}; })
        (builtins.filter (n: pred n set.${n}) (builtins.attrNames set)));
    genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
    optional = c: x: if c then [ x ] else [ ];
    unique = builtins.foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ];
    escapeShellArg = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString s) + "'";
    licenses = { mit = "MIT"; asl20 = "Apache-2.0"; };
    platforms.linux = [ "x86_64-linux" "aarch64-linux" ];

    types = rec {
      str = leaf "str" builtins.isString;
      bool = leaf "bool" builtins.isBool;
      int = leaf "int" builtins.isInt;
      port = leaf "port" (v: builtins.isInt v && v >= 0 && v <= 65535);
      path = leaf "path" (v: (builtins.isString v || builtins.isPath v) && builtins.substring 0 1 (toString v) == "/");
      package = leaf "package" (v: isDrv v || builtins.isString v);
      ints.between = lo: hi: leaf "intBetween" (v: builtins.isInt v && v >= lo && v <= hi) // { min = lo; max = hi; };
      enum = values: leaf "enum" (v: builtins.elem v values) // { inherit values; };
      nullOr = t: wrap "nullOr" t (path: v: if v == null then null else t.coerce path v);
      listOf = t: wrap "listOf" t (path: v:
        if builtins.isList v then map (t.coerce path) v else typeError path "listOf ${t.name}" v);
      attrsOf = t: wrap "attrsOf" t (path: v:
        if builtins.isAttrs v then builtins.mapAttrs (n: t.coerce (path ++ [ n ])) v
        else typeError path "attrsOf ${t.name}" v);
      submodule = m: {
        _type = "type";
        name = "submodule";
        module = m;
        coerce = path: v:
          let
            name = if path == [ ] then "" else builtins.elemAt path (builtins.length path - 1);
            declared = (if builtins.isFunction m then m { inherit name; } else m).options;
          in
          if builtins.isAttrs v then applyOptions path declared (mergeDefs path [ v ])
          else typeError path "submodule" v;
      };
    };
  };

  mergeDefs = path: defs:
    let
      resolved = builtins.concatMap (d: if isIf d then (if d.condition then [ d.content ] else [ ]) else [ d ]) defs;
      active = builtins.concatMap (d: if isIf d then (if d.condition then [ d.content ] else [ ]) else [ d ]) resolved;
    in
    if active == [ ] then empty
    else if builtins.length active == 1 && !(isTree (builtins.head active)) then builtins.head active
    else if builtins.all builtins.isList active then builtins.concatLists active
    else if builtins.all isTree active then mergeAttrs path active
    else if builtins.all (x: x == builtins.head active) active then builtins.head active
    else throw "conflicting definitions for ${showPath path}: ${builtins.toJSON active}";

  mergeAttrs = path: sets:
    let names = builtins.attrNames (builtins.foldl' (a: b: a // b) { } sets);
    in builtins.listToAttrs (map
      (n: {
        name = n;
        value = mergeDefs (path ++ [ n ]) (builtins.concatMap (s: if s ? ${n} then [ s.${n} ] else [ ]) sets);
      })
      names);

  # drop what false mkIfs left behind, in the returned config only (never inside the fixpoint)
  clean = v:
    if isTree v then
      let
        c = builtins.mapAttrs (_: clean) v;
        gone = n: isEmpty c.${n} || (c.${n} == { } && v.${n} != { });
      in
      builtins.removeAttrs c (builtins.filter gone (builtins.attrNames c))
    else v;

  # defaults and type checks; an undeclared name under a declared prefix is an error
  applyOptions = path: decls: values:
    if isOpt decls then
      let
        v =
          if isEmpty values
          then decls.default or (throw "option ${showPath path} is used but not defined")
          else values;
      in
      if decls ? type then decls.type.coerce path v else v
    else
      let
        vals = if isEmpty values then { } else values;
        extra = builtins.filter (n: !(decls ? ${n})) (builtins.attrNames vals);
      in
      if extra != [ ]
      then throw "undeclared option(s) ${builtins.concatStringsSep ", " (map (n: showPath (path ++ [ n ])) extra)}"
      else builtins.mapAttrs (n: d: applyOptions (path ++ [ n ]) d (vals.${n} or empty)) decls;

  # every module once, imports first; a path is a module's identity, as in nixpkgs
  collect = args: seen: modules:
    builtins.foldl'
      (acc: m:
        let key = if builtins.isPath m || builtins.isString m then toString m else null;
        in
        if key != null && builtins.elem key acc.seen then acc
        else
          let
            fn = if key != null then import m else m;
            res = if builtins.isFunction fn then fn args else fn;
            inner = collect args (acc.seen ++ (if key == null then [ ] else [ key ])) (res.imports or [ ]);
          in
          {
            seen = inner.seen;
            modules = acc.modules ++ inner.modules ++ [{
              options = res.options or { };
              config = res.config or (removeAttrs res [ "imports" "options" "config" "_class" "key" ]);
            }];
          })
      { inherit seen; modules = [ ]; }
      modules;

  evalModules = { modules, specialArgs ? { } }:
    let
      args = { inherit lib config options; } // specialArgs;
      loaded = (collect args [ ] modules).modules;
      options = mergeAttrs [ ] (map (m: m.options) loaded);
      raw = mergeAttrs [ ] (map (m: m.config) loaded);
      config = raw // builtins.mapAttrs (n: d: applyOptions [ n ] d (raw.${n} or empty)) options;
    in
    { inherit options; config = clean config; };
in
lib // { inherit evalModules; }
