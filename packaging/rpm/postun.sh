# %postun of the @PKG@ RPM: on upgrade, restart the unit if it was running.
if [ "$1" -ge 1 ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    systemctl try-restart @PKG@.service >/dev/null 2>&1 || :
fi
