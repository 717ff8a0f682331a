# %pre of the @PKG@ RPM (rendered from packaging/rpm/pre.sh by
# packaging/build.sh): the system user and group exist before the files
# owned by them are laid down. RPM has no maintainer-script purge: an erase
# keeps /var/lib/@PKG@; delete it by hand to drop the state.
if ! getent passwd @PKG@ >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/@PKG@ --no-create-home \
        --shell /sbin/nologin --comment "@GECOS@" @PKG@
fi
