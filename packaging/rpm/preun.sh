# %preun of the @PKG@ RPM: on erase (not upgrade) stop and disable the unit.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now @PKG@.service >/dev/null 2>&1 || :
fi
