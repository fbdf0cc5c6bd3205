{
  imports = [ ./peer.nix ./controller.nix ];
}
