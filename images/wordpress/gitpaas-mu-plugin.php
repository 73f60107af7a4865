<?php
/*
 * Plugin Name: gitpaas
 * Description: Plugins named in the app's WP_PLUGINS config var are always active, without
 *   a click in wp-admin (their activation hooks do not run). Part of gitpaas-base/wordpress.
 */

if (!defined('ABSPATH')) {
    exit;
}

/**
 * The plugin files WP_PLUGINS names that exist: "my-plugin" means
 * my-plugin/my-plugin.php (else my-plugin.php); "dir/file.php" is taken as is.
 */
function gitpaas_plugins(): array
{
    static $found = null;
    if ($found !== null) {
        return $found;
    }
    $found = [];
    $wanted = defined('GITPAAS_PLUGINS') ? GITPAAS_PLUGINS : '';
    foreach (preg_split('/[\s,]+/', $wanted, -1, PREG_SPLIT_NO_EMPTY) as $name) {
        if (!preg_match('#^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*\.php)?$#', $name)) {
            error_log("gitpaas: WP_PLUGINS: not a plugin name: $name");
            continue;
        }
        if (!str_ends_with($name, '.php')) {
            $name = is_file(WP_PLUGIN_DIR . "/$name/$name.php") ? "$name/$name.php" : "$name.php";
        }
        if (is_file(WP_PLUGIN_DIR . "/$name")) {
            $found[] = $name;
        } else {
            error_log("gitpaas: WP_PLUGINS names $name, which is not in wp-content/plugins");
        }
    }
    return $found;
}

add_filter('option_active_plugins', function ($active) {
    $active = is_array($active) ? $active : [];
    return array_values(array_unique(array_merge($active, gitpaas_plugins())));
});

add_filter('plugin_action_links', function ($links, $file) {
    if (in_array($file, gitpaas_plugins(), true)) {
        unset($links['deactivate']);
        $links['gitpaas'] = esc_html__('Always active (WP_PLUGINS)');
    }
    return $links;
}, 10, 2);
