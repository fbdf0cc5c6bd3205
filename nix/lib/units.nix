# The systemd units of the two daemons, as plain data (builtins only) so the offline tests can
# compare them with golden files. The NixOS modules only wire them up.
let
  # Shared by both daemons: a system user, read-only system, only the address families in use.
  hardening = {
    User = "wiremesh";
    Group = "wiremesh";
    ProtectSystem = "strict";
    ProtectHome = true;
    NoNewPrivileges = true;
    PrivateTmp = true;
    ProtectKernelModules = true;
    ProtectControlGroups = true;
    RestrictSUIDSGID = true;
    RestrictRealtime = true;
    LockPersonality = true;
    SystemCallArchitectures = "native";
    UMask = "0077";
    RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_NETLINK" "AF_UNIX" ];
    Restart = "on-failure";
    RestartSec = "5s";
  };
  common = { description, execStart, kill }: {
    inherit description;
    wantedBy = [ "multi-user.target" ];
    wants = [ "network-online.target" ];
    after = [ "network-online.target" ];
    serviceConfig = hardening // {
      Type = "notify";
      ExecStart = execStart;
      ExecReload = "${kill} -HUP $MAINPID";
    };
  };
in
{
  # The agent of instance `name`. Its config sits at a fixed path under /etc, so a new config is a
  # SIGHUP (applied as a diff), not a restart that would drop every tunnel. `%d` is systemd's
  # credentials directory: the secret stays root's where sops-nix puts it, and LoadCredential
  # gives the unit a private copy.
  peer = { name, package, kill, identityFile, netmapFile, configPath }:
    let
      run = [
        "${package}/bin/wiremesh-peer run"
        "--config ${configPath}"
        "--identity %d/identity"
        "--state-dir /var/lib/wiremesh/${name}"
      ] ++ (if netmapFile == null then [ ] else [ "--netmap ${netmapFile}" ]);
      unit = common {
        description = "wiremesh peer agent (instance ${name})";
        execStart = builtins.concatStringsSep " " run;
        inherit kill;
      };
    in
    unit // {
      serviceConfig = unit.serviceConfig // {
        LoadCredential = [ "identity:${identityFile}" ];
        AmbientCapabilities = [ "CAP_NET_ADMIN" ];
        CapabilityBoundingSet = [ "CAP_NET_ADMIN" ];
        DeviceAllow = [ "/dev/net/tun rw" ];
        DevicePolicy = "closed";
        # the cache of the last good config and netmap
        StateDirectory = "wiremesh/${name}";
        StateDirectoryMode = "0700";
        # /run/wiremesh/<interface>.sock, where `wiremesh status` looks; shared by every
        # instance, so stopping one must not remove the others' sockets
        RuntimeDirectory = "wiremesh";
        RuntimeDirectoryMode = "0700";
        RuntimeDirectoryPreserve = "yes";
      };
    };

  # The controller of instance `name`: QUIC over UDP needs no capability at all.
  controller = { name, package, kill, identityFile, networkKeyFile, configPath }:
    let
      unit = common {
        description = "wiremesh controller (instance ${name})";
        execStart = builtins.concatStringsSep " " [
          "${package}/bin/wiremesh-controller run"
          "--config ${configPath}"
          "--network-key %d/network-key"
          "--identity %d/identity"
          "--state-dir /var/lib/wiremesh-controller/${name}"
        ];
        inherit kill;
      };
    in
    unit // {
      serviceConfig = unit.serviceConfig // {
        LoadCredential = [ "identity:${identityFile}" "network-key:${networkKeyFile}" ];
        CapabilityBoundingSet = "";
        # the leases (SQLite) and the last netmap
        StateDirectory = "wiremesh-controller/${name}";
        StateDirectoryMode = "0700";
      };
    };
}
