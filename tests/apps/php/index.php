<?php
// Sample php app: proves mod_php runs the page (the sum is computed, not served raw).
header("Content-Type: text/plain");
echo "hello from php " . (40 + 2);
