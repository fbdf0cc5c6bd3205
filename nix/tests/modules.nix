# The NixOS modules through the stub evaluator: units, firewall, hosts, several instances.
{ evalNixos, machineModules, normalize, readJSON, lib, ... }:
let
  throws = v: !(builtins.tryEval (builtins.deepSeq v v)).success;
  agentConfig = ../../crates/wiremesh-core/tests/agent-config.json;
  standalone = peers: evalNixos [
    ../modules/default.nix
    { services.wiremesh = { package = "/nix/store/00000000000000000000000000000000-wiremesh-0.1.0"; inherit peers; }; }
  ];
  two = standalone {
    my-vpn = { configFile = agentConfig; identityFile = "/run/secrets/a"; port = 51820; };
    lab = { configFile = agentConfig; identityFile = "/run/secrets/b"; port = 51830; openFirewall = false; };
  };
  laptop = evalNixos (machineModules "laptop");
  server = evalNixos (machineModules "server");
  assertionsHold = c: builtins.all (a: a.assertion) c.assertions;
in
{
  # the clan laptop's whole agent unit, against a golden file
  peerUnitIsGolden = {
    expr = normalize laptop.systemd.services.wiremesh-peer-my-vpn;
    expected = readJSON ./expected/peer-unit.json;
  };

  peerWiring = {
    expr = normalize {
      inherit (laptop.networking.firewall) allowedUDPPorts;
      inherit (laptop.networking) hostFiles;
      etc = laptop.environment.etc;
      inherit (laptop.users.users) wiremesh;
      units = builtins.attrNames laptop.systemd.services;
      assertions = assertionsHold laptop;
    };
    expected = {
      allowedUDPPorts = [ 51820 ];
      hostFiles = [ "/nix/store/<hash>-wiremesh-my-vpn-plan/hosts" ];
      etc."wiremesh/my-vpn.json".source = "/nix/store/<hash>-wiremesh-my-vpn-plan/laptop.json";
      wiremesh = { isSystemUser = true; group = "wiremesh"; description = "wiremesh daemons"; };
      units = [ "wiremesh-peer-my-vpn" ];
      assertions = true;
    };
  };

  # the server is controller and peer: both daemons, both ports, both configs from one plan
  serverWiring = {
    expr = normalize {
      units = builtins.attrNames server.systemd.services;
      inherit (server.networking.firewall) allowedUDPPorts;
      etc = builtins.mapAttrs (_: e: e.source) server.environment.etc;
      controller = server.services.wiremesh.controllers.my-vpn;
      assertions = assertionsHold server;
    };
    expected = {
      units = [ "wiremesh-controller-my-vpn" "wiremesh-peer-my-vpn" ];
      allowedUDPPorts = [ 51821 51822 51820 ];
      etc = {
        "wiremesh/my-vpn.json" = "/nix/store/<hash>-wiremesh-my-vpn-plan/server.json";
        "wiremesh/my-vpn.controller.json" = "/nix/store/<hash>-wiremesh-my-vpn-plan/server.controller.json";
      };
      controller = {
        enable = true;
        configFile = "/nix/store/<hash>-wiremesh-my-vpn-plan/server.controller.json";
        identityFile = "/run/secrets/vars/wiremesh-my-vpn/identity";
        networkKeyFile = "/run/secrets/vars/wiremesh-network-my-vpn/network-private-key";
        controlPort = 51821;
        relayPort = 51822;
        openFirewall = true;
      };
      assertions = true;
    };
  };

  twoInstancesOnOneMachine = {
    expr = {
      units = builtins.attrNames two.systemd.services;
      ports = two.networking.firewall.allowedUDPPorts;
      etc = builtins.attrNames two.environment.etc;
      exec = map (u: two.systemd.services.${u}.serviceConfig.ExecStart) (builtins.attrNames two.systemd.services);
      state = map (u: two.systemd.services.${u}.serviceConfig.StateDirectory) (builtins.attrNames two.systemd.services);
      assertions = assertionsHold two;
    };
    expected = {
      units = [ "wiremesh-peer-lab" "wiremesh-peer-my-vpn" ];
      # lab's port stays closed: openFirewall = false
      ports = [ 51820 ];
      etc = [ "wiremesh/lab.json" "wiremesh/my-vpn.json" ];
      exec = [
        "/nix/store/00000000000000000000000000000000-wiremesh-0.1.0/bin/wiremesh-peer run --config /etc/wiremesh/lab.json --identity %d/identity --state-dir /var/lib/wiremesh/lab"
        "/nix/store/00000000000000000000000000000000-wiremesh-0.1.0/bin/wiremesh-peer run --config /etc/wiremesh/my-vpn.json --identity %d/identity --state-dir /var/lib/wiremesh/my-vpn"
      ];
      state = [ "wiremesh/lab" "wiremesh/my-vpn" ];
      assertions = true;
    };
  };

  # what the issue requires of both units, each directive by name (the golden files hold the rest)
  unitsCarryTheRequiredHardening = {
    expr = map
      (u:
        let c = u.serviceConfig; in {
          inherit (c) Type Restart ProtectSystem ProtectHome NoNewPrivileges RestrictAddressFamilies CapabilityBoundingSet StateDirectory;
          ambient = c.AmbientCapabilities or [ ];
          reloadSendsHup = builtins.match ".*/bin/kill -HUP \\$MAINPID" c.ExecReload != null;
        })
      [ laptop.systemd.services.wiremesh-peer-my-vpn server.systemd.services.wiremesh-controller-my-vpn ];
    expected =
      let
        both = {
          Type = "notify";
          Restart = "on-failure";
          ProtectSystem = "strict";
          ProtectHome = true;
          NoNewPrivileges = true;
          RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_NETLINK" "AF_UNIX" ];
          reloadSendsHup = true;
        };
      in
      [
        (both // { CapabilityBoundingSet = [ "CAP_NET_ADMIN" ]; ambient = [ "CAP_NET_ADMIN" ]; StateDirectory = "wiremesh/my-vpn"; })
        # QUIC on an unprivileged port needs no capability at all
        (both // { CapabilityBoundingSet = ""; ambient = [ ]; StateDirectory = "wiremesh-controller/my-vpn"; })
      ];
  };

  # one UDP port per daemon, whichever the kind
  aPeerAndAControllerOnOnePortFailAnAssertion = {
    expr = assertionsHold (evalNixos [
      ../modules/default.nix
      {
        services.wiremesh = {
          package = "/nix/store/00000000000000000000000000000000-wiremesh-0.1.0";
          peers.a = { configFile = agentConfig; identityFile = "/run/secrets/a"; port = 51821; };
          controllers.b = {
            configFile = "/nix/store/00000000000000000000000000000000-plan/server.controller.json";
            identityFile = "/run/secrets/b";
            networkKeyFile = "/run/secrets/k";
          };
        };
      }
    ]);
    expected = false;
  };

  # the units hold CAP_NET_ADMIN at most, never CAP_NET_BIND_SERVICE
  aPrivilegedPortFailsAnAssertion = {
    expr = assertionsHold (standalone {
      a = { configFile = agentConfig; identityFile = "/run/secrets/a"; port = 443; };
    });
    expected = false;
  };

  samePortTwiceFailsAnAssertion = {
    expr = assertionsHold (standalone {
      a = { configFile = agentConfig; identityFile = "/run/secrets/a"; port = 51820; };
      b = { configFile = agentConfig; identityFile = "/run/secrets/b"; port = 51820; };
    });
    expected = false;
  };

  netmapIsPassedOn = {
    expr = (standalone { my-vpn = { configFile = agentConfig; identityFile = "/x"; port = 51820; netmapFile = "/var/lib/netmap.bin"; }; }).systemd.services.wiremesh-peer-my-vpn.serviceConfig.ExecStart;
    expected = "/nix/store/00000000000000000000000000000000-wiremesh-0.1.0/bin/wiremesh-peer run --config /etc/wiremesh/my-vpn.json --identity %d/identity --state-dir /var/lib/wiremesh/my-vpn --netmap /var/lib/netmap.bin";
  };

  # beyond the option values themselves, a disabled instance defines nothing at all
  disabledInstanceLeavesNothing = {
    expr = removeAttrs (standalone { my-vpn = { enable = false; configFile = agentConfig; identityFile = "/x"; port = 51820; }; }) [ "services" "clan" ];
    expected = { };
  };

  misspelledOptionIsAnError = {
    expr = throws (standalone { my-vpn = { configFile = agentConfig; identityFile = "/x"; port = 51820; prot = 1; }; });
    expected = true;
  };

  missingIdentityIsAnError = {
    expr = throws (standalone { my-vpn = { configFile = agentConfig; port = 51820; }; });
    expected = true;
  };

  # the firewall opens the port the config file holds, never a guessed default
  missingPortIsAnError = {
    expr = throws (standalone { my-vpn = { configFile = agentConfig; identityFile = "/x"; }; });
    expected = true;
  };

  controllerUnitIsGolden = {
    expr =
      let
        c = evalNixos [
          ../modules/controller.nix
          {
            services.wiremesh.package = "/nix/store/00000000000000000000000000000000-wiremesh-0.1.0";
            services.wiremesh.controllers.my-vpn = {
              configFile = "/nix/store/00000000000000000000000000000000-plan/server.controller.json";
              identityFile = "/run/secrets/vars/wiremesh-my-vpn/identity";
              networkKeyFile = "/run/secrets/vars/wiremesh-network-my-vpn/network-private-key";
            };
          }
        ];
      in
      {
        unit = c.systemd.services.wiremesh-controller-my-vpn;
        ports = c.networking.firewall.allowedUDPPorts;
        etc = c.environment.etc;
      };
    expected = readJSON ./expected/controller.json;
  };

  # lib is the stub: keep it honest about a type error
  badPortIsAnError = {
    expr = throws (lib.types.port.coerce [ "p" ] 70000);
    expected = true;
  };
}
