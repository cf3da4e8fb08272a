// Console support : le seul script de la console, facultatif (tout marche sans lui).
// Un formulaire marqué data-une-fois ne part qu'une fois : ses boutons sont désactivés dès l'envoi,
// pour qu'un double clic ne poste pas deux fois (le serveur ne ferait rien de plus, mais dirait
// « déjà fait » au lieu du résultat du premier envoi).
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (!form.hasAttribute || !form.hasAttribute("data-une-fois")) {
    return;
  }
  if (form.getAttribute("data-envoye") === "oui") {
    event.preventDefault();
    return;
  }
  form.setAttribute("data-envoye", "oui");
  form.setAttribute("aria-busy", "true");
  window.setTimeout(function () {
    form.querySelectorAll("button[type=submit]").forEach(function (button) {
      button.disabled = true;
    });
  }, 0);
});

// Après une action (renvoyer, clore), la page revient avec son résultat : le focus y est mis, pour qu'un
// lecteur d'écran le lise et que le clavier reparte de là (une région présente au chargement n'est pas lue).
document.addEventListener("DOMContentLoaded", function () {
  var result = document.getElementById("resultat-action");
  if (result) {
    result.focus();
  }
});
