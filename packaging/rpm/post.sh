# %post of the @PKG@ RPM: directories with their owners and modes. The
# service is never enabled or started here; see the message.
chown root:@PKG@ /etc/@PKG@ && chmod 0750 /etc/@PKG@
if [ ! -d /var/lib/@PKG@ ]; then
    install -d -m 0700 -o @PKG@ -g @PKG@ /var/lib/@PKG@
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    echo "@PKG@: installed, not enabled and not started: put the certificates into /etc/@PKG@ (see man @PKG@, FILES), then: systemctl enable --now @PKG@"
fi
