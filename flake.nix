{
  description = "cordon: run AI coding agents without handing them your API keys";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      # one source of truth for the version: pyproject.toml
      pyproject = builtins.fromTOML (builtins.readFile ./pyproject.toml);
      version = pyproject.project.version;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # Python dependencies: pyproject.toml is the one list. A requirement names its
      # nixpkgs attribute once normalised (PEP 503: lower case, `_` and `.` as `-`);
      # version bounds and environment markers are nixpkgs' business.
      reqName =
        req:
        lib.toLower (
          builtins.replaceStrings [ "_" "." ] [ "-" "-" ] (
            builtins.head (builtins.match "([A-Za-z0-9][A-Za-z0-9._-]*).*" req)
          )
        );
      fromPyproject = ps: reqs: map (req: ps.${reqName req}) reqs;
      runtimePythonPackages = ps: fromPyproject ps pyproject.project.dependencies;
      # The test suite's: pyproject's `test` extra, minus the linters (the devShell has
      # them) and secretstorage (the build sandbox has no Secret Service).
      notForChecks = [
        "ruff"
        "mypy"
        "secretstorage"
      ];
      testPythonPackages =
        ps:
        fromPyproject ps (
          builtins.filter (
            req: !(builtins.elem (reqName req) notForChecks)
          ) pyproject.project.optional-dependencies.test
        );

      cordonFor =
        pkgs:
        pkgs.python3Packages.buildPythonApplication {
          pname = "cordon";
          inherit version;
          pyproject = true;
          src = lib.cleanSource ./.;

          build-system = [ pkgs.python3Packages.setuptools ];
          dependencies = runtimePythonPackages pkgs.python3Packages;

          # the direnv library, where distributions keep shell integrations
          postInstall = ''
            install -Dm644 shell-hooks/cordon.direnvrc $out/share/cordon/cordon.direnvrc
          '';

          pythonImportsCheck = [ "cordon" ];
          nativeCheckInputs = testPythonPackages pkgs.python3Packages ++ [
            pkgs.bashInteractive
            pkgs.zsh
            pkgs.fish
            pkgs.direnv
            pkgs.curl
            pkgs.shellcheck
          ];
          # A throwaway HOME and a file keyring (the build sandbox has no Secret Service);
          # the `slow` end-to-end tests need npm packages and real agents, which it cannot fetch.
          checkPhase = ''
            runHook preCheck
            export HOME=$(mktemp -d)
            export PYTHON_KEYRING_BACKEND=keyrings.alt.file.PlaintextKeyring
            export CORDON_TEST_KEYRING=file
            python -m pytest -p no:cacheprovider -m "not slow" tests
            runHook postCheck
          '';

          meta = {
            description = "Keep API keys out of AI coding agents: a loopback proxy injects the real credential";
            license = lib.licenses.mit;
            mainProgram = "cordon";
          };
        };
    in
    {
      overlays.default = final: _prev: { cordon = cordonFor final; };

      packages = forAllSystems (pkgs: rec {
        cordon = cordonFor pkgs;
        default = cordon;
      });

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        devShell = self.devShells.${pkgs.stdenv.hostPlatform.system}.default;
      });

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = "${self.packages.${pkgs.stdenv.hostPlatform.system}.default}/bin/cordon";
        };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            (pkgs.python3.withPackages (
              ps:
              runtimePythonPackages ps
              ++ testPythonPackages ps
              ++ [
                ps.setuptools
                ps.secretstorage
                ps.mypy
              ]
            ))
            pkgs.ruff
            pkgs.direnv
            pkgs.zsh
            pkgs.fish
            pkgs.curl
            pkgs.shellcheck
            pkgs.nodejs
          ];
          shellHook = ''
            export PYTHONPATH="$PWD''${PYTHONPATH:+:$PYTHONPATH}"
          '';
        };
      });

      # For other projects' flakes:
      #   devShells.default = pkgs.mkShell {
      #     packages = [ pkgs.codex ];
      #     shellHook = cordon.lib.shellHook { inherit pkgs; agents = [ "codex" ]; };
      #   };
      # puts shims for the agents (run under `cordon exec`) first on PATH and exports
      # the placeholders of the project's cordon.toml, like `use cordon` in direnv.
      lib.shellHook =
        {
          pkgs,
          cordon ? self.packages.${pkgs.stdenv.hostPlatform.system}.default,
          agents ? [ ],
        }:
        let
          exe = "${cordon}/bin/cordon";
          args = lib.escapeShellArgs ([ "--" ] ++ agents);
        in
        ''
          eval "$(${lib.escapeShellArg exe} hook use --shell bash --cordon ${lib.escapeShellArg exe} ${args})"
        '';
    };
}
