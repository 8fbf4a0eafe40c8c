# Evaluates flake.nix's outputs offline against a tiny stand-in for nixpkgs
# (this machine cannot download nixpkgs). It checks the flake's own logic:
# the version read from pyproject.toml, the attributes handed to
# buildPythonApplication, the overlay, the apps, the devShell and lib.shellHook.
# It cannot check that the nixpkgs attribute names exist or that anything builds.
#
#   nix-instantiate --eval --strict --json tests/flake_stub.nix --argstr fakeOut DIR
{ fakeOut ? "/nonexistent" }:
let
  system = "x86_64-linux";
  named = names: builtins.listToAttrs (map (n: { name = n; value = { pname = n; }; }) names);

  lib = {
    genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
    cleanSource = p: p;
    # the real one quotes only when needed; always quoting is equivalent for the shell
    escapeShellArg = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString s) + "'";
    escapeShellArgs = l: builtins.concatStringsSep " " (map lib.escapeShellArg l);
    licenses.mit = "mit";
    toLower = builtins.replaceStrings (chars "ABCDEFGHIJKLMNOPQRSTUVWXYZ") (chars "abcdefghijklmnopqrstuvwxyz");
  };
  chars = s: builtins.genList (i: builtins.substring i 1 s) (builtins.stringLength s);

  pythonPackages =
    named [
      "cryptography" "anyio" "h11" "keyring" "python-dotenv" "tomli-w" "tomlkit" "uvloop" "setuptools"
      "pytest" "pytest-timeout" "pytest-xdist" "pexpect" "pyte" "hypothesis" "httpx" "requests" "websockets" "openai"
      "keyrings-alt" "secretstorage" "mypy" "pytestCheckHook"
    ]
    // {
      buildPythonApplication = attrs: attrs // { outPath = fakeOut; };
    };

  pkgs =
    named [ "bashInteractive" "zsh" "fish" "direnv" "curl" "shellcheck" "nodejs" "ruff" ]
    // {
      python3Packages = pythonPackages;
      python3.withPackages = f: { pyenv = map (p: p.pname) (f pythonPackages); };
      mkShell = attrs: attrs;
      stdenv.hostPlatform.system = system;
    };

  nixpkgs = {
    inherit lib;
    legacyPackages.${system} = pkgs;
  };

  flake = import ../flake.nix;
  out = flake.outputs { self = out; inherit nixpkgs; };
  pkg = out.packages.${system}.default;
  shell = out.devShells.${system}.default;
  names = map (p: p.pname);
in
{
  description = flake.description;
  inherit (pkg) pname version pyproject pythonImportsCheck postInstall checkPhase;
  build-system = names pkg.build-system;
  dependencies = names pkg.dependencies;
  nativeCheckInputs = names pkg.nativeCheckInputs;
  mainProgram = pkg.meta.mainProgram;
  overlayVersion = ((out.overlays.default pkgs pkgs).cordon).version;
  app = out.apps.${system}.default;
  checks = builtins.attrNames out.checks.${system};
  devShellPython = builtins.head (builtins.filter (p: p ? pyenv) shell.packages);
  devShellTools = map (p: p.pname) (builtins.filter (p: p ? pname) shell.packages);
  shellHook = out.lib.shellHook {
    inherit pkgs;
    agents = [ "codex" ];
  };
  shellHookDefault = out.lib.shellHook { inherit pkgs; };
}
