# How people reach PRTS: an nginx virtual host (optionally with an ACME certificate) in
# front of gunicorn, and the firewall.
{
  config,
  lib,
  ...
}:
let
  inherit (lib) mkOption mkIf mkDefault types;
  cfg = config.services.prts;

  listen = cfg.settings.web.listen;
  listenHost = lib.removeSuffix ":${listenPort}" listen;
  listenPort = lib.last (lib.splitString ":" listen);
  loopbackHosts = [
    "127.0.0.1"
    "localhost"
    "[::1]"
  ];
in
{
  options.services.prts.nginx = {
    enable = mkOption {
      type = types.bool;
      default = false;
      description = "Serve PRTS through an nginx virtual host (the web server stays on loopback).";
    };
    virtualHost = mkOption {
      type = types.str;
      default = config.networking.fqdnOrHostName;
      defaultText = lib.literalExpression "config.networking.fqdnOrHostName";
      example = "prts.example.org";
      description = "Host name of the virtual host.";
    };
    acme = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Get a certificate for the virtual host from an ACME CA (Let's Encrypt by default;
        see `security.acme`) and redirect HTTP to HTTPS.
      '';
    };
  };

  config = mkIf cfg.enable (
    lib.mkMerge [
      {
        assertions = [
          {
            assertion = cfg.openFirewall && !cfg.nginx.enable -> !(builtins.elem listenHost loopbackHosts);
            message = ''
              services.prts.openFirewall opens port ${listenPort}, but settings.web.listen = "${listen}"
              only listens on loopback: enable services.prts.nginx, or listen on 0.0.0.0.
            '';
          }
          {
            assertion = cfg.nginx.acme -> cfg.nginx.enable;
            message = "services.prts.nginx.acme needs services.prts.nginx.enable = true.";
          }
          {
            assertion = cfg.nginx.enable && cfg.nginx.acme -> cfg.nginx.virtualHost != "localhost" && lib.hasInfix "." cfg.nginx.virtualHost;
            message = ''
              services.prts.nginx.acme: an ACME certificate needs a public DNS name as
              services.prts.nginx.virtualHost, not "${cfg.nginx.virtualHost}".
            '';
          }
        ];
      }

      (mkIf cfg.nginx.enable {
        services.nginx = {
          enable = true;
          recommendedProxySettings = true;
          recommendedTlsSettings = true;
          virtualHosts.${cfg.nginx.virtualHost} = {
            enableACME = cfg.nginx.acme;
            forceSSL = cfg.nginx.acme;
            locations."/" = {
              proxyPass = "http://${listen}";
              extraConfig = ''
                # git pushes stream through to the app, which enforces git.max_push_bytes.
                client_max_body_size 0;
                proxy_request_buffering off;
                # Live logs are server-sent events: pass each line on at once.
                proxy_buffering off;
                proxy_read_timeout 1h;
              '';
            };
          };
        };
        # nginx is the one proxy in front: trust the X-Forwarded-* headers it sets, so
        # sign-in limits and the audit trail see the client, not 127.0.0.1.
        services.prts.settings.web = {
          proxy_hops = mkDefault 1;
          public_url = mkDefault "${if cfg.nginx.acme then "https" else "http"}://${cfg.nginx.virtualHost}";
        };
      })

      (mkIf cfg.openFirewall {
        networking.firewall.allowedTCPPorts =
          if cfg.nginx.enable then
            [
              80
              443
            ]
          else
            [ (lib.toInt listenPort) ];
      })
    ]
  );
}
