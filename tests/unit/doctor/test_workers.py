"""Worker pools read from a guest's tree built in tmp_path (Debian and RHEL layouts, links, include loops)."""

from __future__ import annotations

from pathlib import Path

from dom0.doctor import workers
from dom0.image.tree import DirectoryTree


def _write(root: Path, path: str, text: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def debian(root: Path, mpm: str = "prefork") -> None:
    _write(
        root,
        "/etc/apache2/apache2.conf",
        "# Global configuration\nTimeout 300\nIncludeOptional mods-enabled/*.load\n"
        "IncludeOptional mods-enabled/*.conf\n"
        "IncludeOptional conf-enabled/*.conf\n",
    )
    for name in ("prefork", "event"):
        load = f"LoadModule mpm_{name}_module mod_mpm_{name}.so\n"
        _write(root, f"/etc/apache2/mods-available/mpm_{name}.load", load)
    _write(
        root,
        "/etc/apache2/mods-available/mpm_prefork.conf",
        "<IfModule mpm_prefork_module>\n\tStartServers 5\n\tMaxRequestWorkers 150\n</IfModule>\n",
    )
    _write(
        root,
        "/etc/apache2/mods-available/mpm_event.conf",
        "<IfModule mpm_event_module>\n\tThreadsPerChild 25\n\tMaxRequestWorkers 150\n</IfModule>\n",
    )
    enabled = root / "etc/apache2/mods-enabled"
    enabled.mkdir(parents=True)
    for suffix in ("load", "conf"):
        # absolute links, as a2enmod makes them relative; both resolve inside the guest, never on the host
        (enabled / f"mpm_{mpm}.{suffix}").symlink_to(f"/etc/apache2/mods-available/mpm_{mpm}.{suffix}")


def test_debian_prefork_150_workers_in_256_mib_about_5_fit(tmp_path: Path) -> None:
    debian(tmp_path)
    scan = workers.scan_tree(DirectoryTree(tmp_path))
    [pool] = scan.pools
    assert (pool.server, pool.workers) == ("Apache prefork", 150)
    [finding] = workers.judge("web", 256, scan.pools)
    assert finding.evidence == (
        "Apache prefork allows 150 workers (MaxRequestWorkers in /etc/apache2/mods-enabled/mpm_prefork.conf); "
        "at ~25 MiB each that is 3750 MiB in a 256 MiB guest: about 5 fit"
    )
    assert finding.hint == "set MaxRequestWorkers to 5 or give the guest more memory"


def test_debian_event_counts_processes_not_threads(tmp_path: Path) -> None:
    debian(tmp_path, "event")
    [pool] = workers.scan_tree(DirectoryTree(tmp_path)).pools
    assert (pool.server, pool.workers, pool.processes) == ("Apache event", 150, 6)
    assert workers.judge("web", 1024, (pool,)) == []  # 6 x 32 MiB fits in 1 GiB


def test_rhel_layout_maxclients_and_commented_loadmodule(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "/etc/httpd/conf/httpd.conf",
        'ServerRoot "/etc/httpd"\nInclude conf.modules.d/*.conf\n<IfModule prefork.c>\nMaxClients 40\n</IfModule>\n'
        "<IfModule worker.c>\nMaxClients 999\n</IfModule>\n",
    )
    _write(
        tmp_path,
        "/etc/httpd/conf.modules.d/00-mpm.conf",
        "LoadModule mpm_prefork_module modules/mod_mpm_prefork.so\n#LoadModule mpm_worker_module x.so\n",
    )
    [pool] = workers.scan_tree(DirectoryTree(tmp_path)).pools
    assert (pool.server, pool.workers) == ("Apache prefork", 40)
    assert pool.setting == "MaxClients in /etc/httpd/conf/httpd.conf"


def test_include_loop_is_read_once_and_reported(tmp_path: Path) -> None:
    _write(tmp_path, "/etc/httpd/conf/httpd.conf", "Include conf/a.conf\nMaxRequestWorkers 20\n")
    _write(tmp_path, "/etc/httpd/conf/a.conf", "Include /etc/httpd/conf/httpd.conf\nInclude conf/a.conf\n")
    scan = workers.scan_tree(DirectoryTree(tmp_path))
    assert [p.workers for p in scan.pools] == [20]
    assert scan.files_read == 2
    assert any("more than once" in n for n in scan.notes)


def test_link_out_of_the_guest_resolves_inside_it(tmp_path: Path) -> None:
    host = tmp_path / "host"
    _write(host, "/secret.conf", "MaxRequestWorkers 7\n")
    guest = tmp_path / "guest"
    _write(guest, "/etc/apache2/apache2.conf", "Include /etc/apache2/evil.conf\n")
    (guest / "etc/apache2/evil.conf").symlink_to(host / "secret.conf")
    [pool] = workers.scan_tree(DirectoryTree(guest)).pools
    assert pool.workers == 256  # the host's file was never read: Apache's default stands


def test_php_fpm_pools_each_judged(tmp_path: Path) -> None:
    _write(tmp_path, "/etc/php/8.2/fpm/pool.d/www.conf", "[www]\npm = dynamic\npm.max_children = 50 ; busy\n")
    _write(tmp_path, "/etc/php-fpm.d/small.conf", "[small]\npm.max_children = 2\n")
    scan = workers.scan_tree(DirectoryTree(tmp_path))
    assert [(p.server, p.workers) for p in scan.pools] == [("PHP-FPM pool www", 50), ("PHP-FPM pool small", 2)]
    [finding] = workers.judge("app", 512, scan.pools)
    assert "PHP-FPM pool www allows 50 workers (pm.max_children in /etc/php/8.2/fpm/pool.d/www.conf)" in (
        finding.evidence
    )
    assert finding.evidence.endswith("about 9 fit")


def test_many_files_are_bounded(tmp_path: Path) -> None:
    _write(tmp_path, "/etc/apache2/apache2.conf", "IncludeOptional conf.d/*.conf\n")
    for i in range(200):
        _write(tmp_path, f"/etc/apache2/conf.d/{i:03}.conf", f"MaxRequestWorkers {i + 1}\n")
    scan = workers.scan_tree(DirectoryTree(tmp_path))
    assert scan.files_read == workers.MAX_FILES
