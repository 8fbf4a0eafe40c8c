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

      # The test suite's Python packages (pyproject's `test` extra, minus the linters).
      testPythonPackages = ps: [
        ps.pytest
        ps.pytest-timeout
        ps.pytest-xdist
        ps.pexpect
        ps.hypothesis
        ps.httpx
        ps.requests
        ps.websockets
        ps.openai
        ps.keyrings-alt
      ];

      cordonFor =
        pkgs:
        pkgs.python3Packages.buildPythonApplication {
          pname = "cordon";
          inherit version;
          pyproject = true;
          src = lib.cleanSource ./.;

          build-system = [ pkgs.python3Packages.setuptools ];
          dependencies = with pkgs.python3Packages; [
            cryptography
            anyio
            h11
            keyring
            python-dotenv
            tomli-w
            tomlkit
            uvloop
          ];

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
              testPythonPackages ps
              ++ [
                ps.setuptools
                ps.cryptography
                ps.anyio
                ps.h11
                ps.keyring
                ps.python-dotenv
                ps.tomli-w
                ps.tomlkit
                ps.uvloop
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
